"""Published JSON Schemas: results.schema.json (the seed's Test Results Schema) and pinned OpenAI
component schemas under openai/ (regenerate with `python -m llmpyramid.schemas.pin`)."""
