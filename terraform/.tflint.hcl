# TFLint (seed: "Static Analysis Tools"): terraform recommended preset, pinned AWS and GCP
# rulesets, naming conventions and documentation requirements.
# Run: tflint --init && tflint --chdir=terraform/<module> --config="$PWD/terraform/.tflint.hcl"
config {
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "recommended"
}

plugin "aws" {
  enabled = true
  version = "0.48.0"
  source  = "github.com/terraform-linters/tflint-ruleset-aws"
}

plugin "google" {
  enabled = true
  version = "0.38.0"
  source  = "github.com/terraform-linters/tflint-ruleset-google"
}

# Naming conventions: snake_case for every block label.
rule "terraform_naming_convention" {
  enabled = true
  format  = "snake_case"
}

# Documentation requirements.
rule "terraform_documented_variables" {
  enabled = true
}

rule "terraform_documented_outputs" {
  enabled = true
}

rule "terraform_typed_variables" {
  enabled = true
}

rule "terraform_standard_module_structure" {
  enabled = true
}
