"""The Terraform tree read as data, for the offline checks of ``test_terraform.py``.

``terraform validate`` needs the providers, which cannot be downloaded where the tests run,
so these checks stand in for the part of it that needs no provider: a module call passes
only inputs its module declares, every required input, and reads only outputs it has;
``var.`` names a declared variable. Local modules are read from ``infra/terraform/modules``;
registry modules from ``infra/terraform/registry-modules.json``, the interface of each
pinned version (its inputs, the attributes of its object-typed inputs, its outputs and its
provider constraints), which ``python -m tests.deploy.record_module_interfaces`` writes
from the module's downloaded source (``terraform init`` puts it under
``.terraform/modules``).

    >>> unquote('"21.19.0"'), unquote("${var.name}")
    ('21.19.0', '${var.name}')
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
INTERFACES = TERRAFORM / "registry-modules.json"

# Arguments of a module block that are Terraform's, not the module's inputs.
META_ARGUMENTS = {"source", "version", "providers", "count", "for_each", "depends_on"}


def is_marker(key: str) -> bool:
    """hcl2's own keys beside a block's contents (``__comments__``, ``__is_block__``)."""
    return key.startswith("__") and key.endswith("__")


_REFERENCE = r"(?<![\w.])"
MODULE_OUTPUT = re.compile(_REFERENCE + r"module\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")
VARIABLE = re.compile(_REFERENCE + r"var\.([A-Za-z0-9_]+)")
LINE_COMMENT = re.compile(r"(?m)^\s*(#|//).*$")


def unquote(value: Any) -> Any:
    """A string literal as hcl2 gives it (with its quotes), without them; anything else as is."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(document: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``kind`` blocks of a parsed file with one label, as (label, body) pairs."""
    found = []
    for entry in document.get(kind, []):
        for label, body in entry.items():
            if not is_marker(label):
                found.append((unquote(label), body))
    return found


@dataclass
class ModuleCall:
    name: str
    source: str
    version: str | None
    arguments: dict[str, Any]
    file: Path

    @property
    def is_local(self) -> bool:
        return self.source.startswith("./") or self.source.startswith("../")

    @property
    def key(self) -> str:
        """How registry-modules.json names the called module: ``source@version``."""
        return f"{self.source}@{self.version}"


@dataclass
class TerraformDir:
    """One Terraform module (an env or a module under modules/): its files, parsed."""

    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, ModuleCall] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[Path, dict[str, Any]] = field(default_factory=dict)
    texts: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> TerraformDir:
        module = cls(path)
        for file in sorted(path.glob("*.tf")):
            text = file.read_text(encoding="utf-8")
            document = parse(text)
            module.texts[file] = text
            module.documents[file] = document
            module.variables.update(blocks(document, "variable"))
            module.outputs.update(blocks(document, "output"))
            module.terraform.extend(document.get("terraform", []))
            for name, body in blocks(document, "module"):
                module.calls[name] = ModuleCall(
                    name,
                    unquote(body["source"]),
                    unquote(body.get("version")),
                    {k: v for k, v in body.items() if k not in META_ARGUMENTS and not is_marker(k)},
                    file,
                )
        return module

    def code(self) -> str:
        """The text of every file without its whole-line comments (which name things freely)."""
        return "\n".join(LINE_COMMENT.sub("", text) for text in self.texts.values())

    def required_providers(self) -> dict[str, dict[str, Any]]:
        providers: dict[str, dict[str, Any]] = {}
        for block in self.terraform:
            for entry in block.get("required_providers", []):
                for name, spec in entry.items():
                    if not is_marker(name):
                        providers[name] = {k: unquote(v) for k, v in spec.items()}
        return providers

    def required_version(self) -> str | None:
        for block in self.terraform:
            if "required_version" in block:
                return str(unquote(block["required_version"]))
        return None

    def resources(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Every (type, name, body) of ``resource`` (or ``data``) blocks."""
        found = []
        for document in self.documents.values():
            for entry in document.get(kind, []):
                for resource_type, named in entry.items():
                    if is_marker(resource_type):
                        continue
                    for name, body in named.items():
                        if not is_marker(name):
                            found.append((unquote(resource_type), unquote(name), body))
        return found


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> dict[str, Any]:
    document: dict[str, Any] = hcl2.loads(text)
    return document


def parse(text: str) -> dict[str, Any]:
    """A file's text parsed (once per distinct text: the tests' planted copies of the tree
    differ from it in one file)."""
    return copy.deepcopy(_parsed(text))


def terraform_dirs(root: Path = TERRAFORM) -> list[Path]:
    """Every folder of ``root`` that holds .tf files (modules and envs)."""
    return sorted({file.parent for file in root.rglob("*.tf") if ".terraform" not in file.parts})


def load_interfaces(path: Path = INTERFACES) -> dict[str, Any]:
    interfaces: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return interfaces


def interface_of_source(module: TerraformDir) -> dict[str, Any]:
    """A module's interface as registry-modules.json records one, from its source files."""
    inputs = {}
    for name, spec in module.variables.items():
        entry: dict[str, Any] = {"required": "default" not in spec}
        type_expression = str(spec.get("type", ""))
        attributes = object_attributes(type_expression)
        if attributes:
            entry["attributes"] = attributes
            # Whether a value is one such object, or a map or list of them.
            entry["of"] = re.match(r"^\$?\{?(map|list|set|object)\(", type_expression).group(1)  # type: ignore[union-attr]
        inputs[name] = entry
    return {
        "inputs": inputs,
        "outputs": sorted(module.outputs),
        "required_version": module.required_version(),
        "required_providers": {
            name: spec.get("version") for name, spec in sorted(module.required_providers().items())
        },
    }


def object_attributes(type_expression: str) -> list[str]:
    """The attribute names of the object type in ``type_expression`` (that of an
    ``object({...})``, a ``map(object({...}))`` or a ``list(object({...}))``), outermost
    object only; empty for other types.

    >>> object_attributes("${map(object({create = optional(bool), taints = optional(map("
    ...     "object({key = string, effect = string})))}))}")
    ['create', 'taints']
    >>> object_attributes("list(string)")
    []
    """
    start = type_expression.find("object({")
    if start < 0 or not re.match(r"^\$?\{?(map\(|list\(|set\()?object\(\{", type_expression):
        return []
    depth, names, token = 0, [], ""
    body = type_expression[start + len("object(") :]
    for index, char in enumerate(body):
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and char == "=" and body[index + 1 : index + 2] != "=":
            name = re.findall(r"([A-Za-z_][A-Za-z0-9_-]*)\s*$", token)
            if name:
                names.append(name[0])
            token = ""
        elif depth == 1 and char == ",":
            token = ""
        elif depth == 1:
            token += char
    return names
