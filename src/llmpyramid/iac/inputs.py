"""Policy input: one normalized shape from either a terraform plan or a module's parsed HCL.

    {"source": "plan" | "hcl", "target": "...", "layer": "base|burst|...",
     "resources": [{"address", "type", "name", "values", "refs"}]}

`values` are attribute values with nested blocks as lists of objects (the shape both plan JSON and
python-hcl2 produce). In HCL, `var.x` / `local.x` references are resolved where the value is
static; anything still dynamic stays a "${...}" string, which policies treat as unknown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2

from llmpyramid.errors import ConfigError

_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
_REF = re.compile(r"^\$\{(var|local)\.([A-Za-z0-9_-]+)\}$")
_MERGE = re.compile(r"^\$\{merge\((.*)\)\}$", re.S)
_RESOURCE_REF = re.compile(r"\b((?:aws|google|hcloud)_[a-z0-9_]+\.[A-Za-z0-9_-]+)")


def load_module(module: Path) -> dict[str, list[Any]]:
    """All top-level blocks of a module's *.tf files, merged by block type."""
    merged: dict[str, list[Any]] = {}
    files = sorted(module.glob("*.tf"))
    if not files:
        raise ConfigError(f"{module} contains no *.tf files")
    for tf in files:
        try:
            with tf.open() as fh:
                doc = hcl2.load(fh, serialization_options=_OPTIONS)
        except Exception as exc:  # the HCL parser raises lark errors of many kinds
            raise ConfigError(f"cannot parse {tf}: {' '.join(str(exc).split())[:200]}") from None
        for key, blocks in doc.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


class _Resolver:
    def __init__(self, doc: dict[str, list[Any]]):
        self.vars: dict[str, Any] = {}
        for block in doc.get("variable", []):
            for name, spec in block.items():
                if isinstance(spec, dict) and "default" in spec:
                    self.vars[name] = spec["default"]
        self.locals: dict[str, Any] = {}
        for block in doc.get("locals", []):
            self.locals.update(block)

    def resolve(self, value: Any, depth: int = 0) -> Any:
        if depth > 10:
            return value
        if isinstance(value, dict):
            return {k: self.resolve(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, depth + 1) for v in value]
        if not isinstance(value, str):
            return value
        if m := _REF.match(value):
            table = self.vars if m.group(1) == "var" else self.locals
            if m.group(2) in table:
                return self.resolve(table[m.group(2)], depth + 1)
            return value
        if m := _MERGE.match(value):
            merged: dict[str, Any] = {}
            for arg in _split_args(m.group(1)):
                part = self._merge_arg(arg, depth)
                if not isinstance(part, dict):
                    return value  # not statically known
                merged.update(part)
            return merged
        return value

    def _merge_arg(self, arg: str, depth: int) -> Any:
        arg = arg.strip()
        if arg.startswith("{"):
            try:
                return self.resolve(hcl2.loads(f"x = {arg}\n", serialization_options=_OPTIONS)["x"], depth + 1)
            except Exception:
                return None
        return self.resolve("${" + arg + "}", depth + 1)


def _split_args(text: str) -> list[str]:
    """Split a function's argument list on top-level commas."""
    args: list[str] = []
    current: list[str] = []
    depth, quote = 0, False
    for ch in text:
        if ch == '"':
            quote = not quote
        elif not quote and ch in "([{":
            depth += 1
        elif not quote and ch in ")]}":
            depth -= 1
        elif not quote and ch == "," and depth == 0:
            args.append("".join(current))
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        args.append("".join(current))
    return args


def _flatten_dynamic(values: dict[str, Any]) -> dict[str, Any]:
    """Treat `dynamic "x" { content {...} }` as if the block were written literally."""
    out = {k: v for k, v in values.items() if k != "dynamic"}
    for dyn in values.get("dynamic", []):
        for block_name, spec in dyn.items():
            for content in spec.get("content", []):
                out.setdefault(block_name, [])
                if isinstance(out[block_name], list):
                    out[block_name].append(_flatten_dynamic(content))
    for k, v in out.items():
        if isinstance(v, list):
            out[k] = [_flatten_dynamic(x) if isinstance(x, dict) else x for x in v]
    return out


def _refs(value: Any) -> list[str]:
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            found.update(_RESOURCE_REF.findall(v))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return sorted(found)


def _layer(resolver: _Resolver) -> str:
    layer = resolver.locals.get("layer", "")
    return layer if isinstance(layer, str) and "${" not in layer else ""


def from_hcl(module: Path, target: str) -> dict[str, Any]:
    doc = load_module(module)
    resolver = _Resolver(doc)
    resources = []
    for block in doc.get("resource", []):
        for rtype, named in block.items():
            for name, raw in named.items():
                values = resolver.resolve(_flatten_dynamic(raw))
                resources.append(
                    {
                        "address": f"{rtype}.{name}",
                        "type": rtype,
                        "name": name,
                        "values": values,
                        "refs": _refs(raw),
                    }
                )
    return {"source": "hcl", "target": target, "layer": _layer(resolver), "resources": resources}


def _config_refs(module_config: dict[str, Any]) -> dict[str, list[str]]:
    """address -> referenced resource addresses, from the plan's configuration section."""
    refs: dict[str, list[str]] = {}
    for res in module_config.get("resources", []):
        found: set[str] = set()

        def walk(v: Any, found: set[str] = found) -> None:
            if isinstance(v, dict):
                for key, x in v.items():
                    if key == "references":
                        found.update(r for r in x if _RESOURCE_REF.fullmatch(r))
                    else:
                        walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(res.get("expressions", {}))
        refs[res["address"]] = sorted(found)
    return refs


def from_plan(plan: dict[str, Any], target: str, layer: str = "") -> dict[str, Any]:
    """Planned resources of the root module (modules are planned as roots, so addresses match HCL)."""
    root = plan.get("planned_values", {}).get("root_module", {})
    refs = _config_refs(plan.get("configuration", {}).get("root_module", {}))
    resources = []

    def collect(mod: dict[str, Any]) -> None:
        for res in mod.get("resources", []):
            if res.get("mode") != "managed":
                continue
            base = re.sub(r"\[[^\]]*\]$", "", res["address"])
            resources.append(
                {
                    "address": res["address"],
                    "type": res["type"],
                    "name": res["name"],
                    "values": res.get("values") or {},
                    "refs": refs.get(base, []),
                }
            )
        for child in mod.get("child_modules", []):
            collect(child)

    collect(root)
    return {"source": "plan", "target": target, "layer": layer, "resources": resources}
