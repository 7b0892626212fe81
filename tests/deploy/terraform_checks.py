"""The offline checks of the Terraform tree: each returns the problems it finds, one line
each, so that a test asserts none on the real tree and some on a tree with a planted mistake.

What they hold, that ``terraform validate`` would (were its providers there) or that review
would otherwise have to: module calls pass declared inputs, all required ones, and read
existing outputs (registry modules against their recorded interface, by version, so that a
version bump with renamed inputs fails); a registry module is pinned to one exact version;
an env pins Terraform's and every provider's version, and those pins satisfy every module's
constraint; every variable has a type and a description; IAM policies allow no wildcard
action and no wildcard resource; the two rewrites ``terraform fmt`` makes beyond hclfmt's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.deploy.terraform_config import (
    LINE_COMMENT,
    MODULE_OUTPUT,
    VARIABLE,
    ModuleCall,
    TerraformDir,
    is_marker,
    terraform_dirs,
    unquote,
)

EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def read_tree(root: Path) -> dict[Path, TerraformDir]:
    return {path: TerraformDir.read(path) for path in terraform_dirs(root)}


def _where(module: TerraformDir, root: Path) -> str:
    return str(module.path.relative_to(root))


def called_interface(
    call: ModuleCall,
    module: TerraformDir,
    tree: dict[Path, TerraformDir],
    interfaces: dict[str, Any],
) -> dict[str, Any] | None:
    """The called module's interface: read from its folder (local) or its record (registry)."""
    if call.is_local:
        target = tree.get((module.path / call.source).resolve())
        if target is None:
            return None
        return {
            "inputs": {
                name: {"required": "default" not in spec} for name, spec in target.variables.items()
            },
            "outputs": sorted(target.outputs),
        }
    recorded: dict[str, Any] | None = interfaces.get(call.key)
    return recorded


def module_calls(root: Path, interfaces: dict[str, Any]) -> list[str]:
    """Every call's inputs declared, every required input given, every registry call pinned
    exactly and recorded, every object-typed input's literal attributes declared."""
    problems = []
    tree = read_tree(root)
    for module in tree.values():
        for call in module.calls.values():
            where = f"{_where(module, root)}: module {call.name}"
            if not call.is_local and not EXACT_VERSION.match(call.version or ""):
                problems.append(f"{where}: version {call.version!r} is not one exact version")
                continue
            interface = called_interface(call, module, tree, interfaces)
            if interface is None:
                problems.append(
                    f"{where}: no interface for {call.key if not call.is_local else call.source}"
                    " (a local folder that does not exist, or a registry version with no record"
                    " in registry-modules.json: record it with"
                    " tests.deploy.record_module_interfaces)"
                )
                continue
            inputs = interface["inputs"]
            for argument in sorted(set(call.arguments) - set(inputs)):
                problems.append(f"{where}: passes {argument!r}, which the module does not declare")
            for name, spec in sorted(inputs.items()):
                if spec["required"] and name not in call.arguments:
                    problems.append(f"{where}: does not pass the required input {name!r}")
            problems.extend(_attribute_problems(where, call, inputs))
    return problems


def _attribute_problems(where: str, call: ModuleCall, inputs: dict[str, Any]) -> list[str]:
    """Attributes of literal objects given to object-typed inputs that the type lacks
    (Terraform drops them without a word: a misspelt ``taint`` would just not taint)."""
    problems = []
    for name, value in call.arguments.items():
        spec = inputs.get(name, {})
        attributes = spec.get("attributes")
        if not attributes:
            continue
        if spec.get("of") == "map" and isinstance(value, dict):
            entries = [v for k, v in value.items() if not is_marker(k) and isinstance(v, dict)]
        elif spec.get("of") == "list" and isinstance(value, list):
            entries = [v for v in value if isinstance(v, dict)]
        elif spec.get("of") == "object" and isinstance(value, dict):
            entries = [value]
        else:
            continue  # an expression: its attributes are not literal here
        for entry in entries:
            for key in sorted(k for k in entry if not is_marker(k)):
                if key not in attributes:
                    problems.append(f"{where}: {name} has attribute {key!r}, which its type lacks")
    return problems


def references(root: Path, interfaces: dict[str, Any]) -> list[str]:
    """``var.X`` names a declared variable; ``module.M.O`` a called module and its output."""
    problems = []
    tree = read_tree(root)
    for module in tree.values():
        code = module.code()
        for name in sorted(set(VARIABLE.findall(code)) - set(module.variables)):
            problems.append(f"{_where(module, root)}: var.{name} is not declared")
        for called, output in sorted(set(MODULE_OUTPUT.findall(code))):
            call = module.calls.get(called)
            if call is None:
                problems.append(f"{_where(module, root)}: module.{called} is not called here")
                continue
            interface = called_interface(call, module, tree, interfaces)
            if interface is not None and output not in interface["outputs"]:
                problems.append(
                    f"{_where(module, root)}: module.{called}.{output}:"
                    " the module has no such output"
                )
    return problems


def declarations(root: Path) -> list[str]:
    """Every variable has a type and a description; every output a description."""
    problems = []
    for module in read_tree(root).values():
        for name, spec in sorted(module.variables.items()):
            for needed in ("type", "description"):
                if needed not in spec:
                    problems.append(f"{_where(module, root)}: variable {name} has no {needed}")
        for name, spec in sorted(module.outputs.items()):
            if "description" not in spec:
                problems.append(f"{_where(module, root)}: output {name} has no description")
    return problems


def satisfies(version: str, constraints: str) -> bool:
    """Whether an exact version meets a Terraform version constraint (=, !=, >, >=, <, <=, ~>).

    >>> satisfies("6.28.0", ">= 6.28, < 7.0.0"), satisfies("6.27.1", ">= 6.28")
    (True, False)
    >>> satisfies("6.30.0", "~> 6.28"), satisfies("7.0.0", "~> 6.28")
    (True, False)
    >>> satisfies("6.28.5", "~> 6.28.0"), satisfies("6.29.0", "~> 6.28.0")
    (True, False)
    """

    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("."))

    have = parts(version)
    for constraint in (c.strip() for c in constraints.split(",") if c.strip()):
        match = re.match(r"^(=|!=|>=|<=|>|<|~>)?\s*(\d+(?:\.\d+)*)$", constraint)
        if match is None:
            return False
        operator, wanted = match.group(1) or "=", parts(match.group(2))
        padded = wanted + (0,) * (3 - len(wanted))
        if operator == "~>":
            # The last given part may grow; the ones before it are fixed.
            fixed = wanted[:-1] if len(wanted) > 1 else wanted
            if have < padded or have[: len(fixed)] != fixed:
                return False
            continue
        verdict = {
            "=": have == padded,
            "!=": have != padded,
            ">": have > padded,
            ">=": have >= padded,
            "<": have < padded,
            "<=": have <= padded,
        }[operator]
        if not verdict:
            return False
    return True


def version_pins(root: Path, interfaces: dict[str, Any]) -> list[str]:
    """An env (a folder under envs/) pins Terraform and each provider exactly, configures its
    S3 backend per run (an empty ``backend "s3"`` block), and its pins meet the constraints
    of every module it uses, local or registry."""
    problems = []
    tree = read_tree(root)
    for module in tree.values():
        if module.path.parent.name != "envs":
            continue
        where = _where(module, root)
        if module.required_version() is None:
            problems.append(f"{where}: no required_version")
        pins = {name: spec.get("version") for name, spec in module.required_providers().items()}
        for name, version in sorted(pins.items()):
            if not EXACT_VERSION.match(str(version or "")):
                problems.append(
                    f"{where}: provider {name} is not pinned to one version ({version!r})"
                )
        backends = [b for block in module.terraform for b in block.get("backend", [])]
        if not any('"s3"' in backend or "s3" in backend for backend in backends):
            problems.append(f"{where}: no S3 backend")
        for constraint_source, constraints in _constraints_used_by(module, tree, interfaces):
            for name, constraint in constraints.items():
                if constraint is None:
                    continue
                if name not in pins:
                    problems.append(
                        f"{where}: {constraint_source} needs provider {name}, not pinned here"
                    )
                elif EXACT_VERSION.match(str(pins[name])) and not satisfies(
                    str(pins[name]), constraint
                ):
                    problems.append(
                        f"{where}: provider {name} {pins[name]} does not meet"
                        f" {constraint_source}'s {constraint!r}"
                    )
    return problems


def _constraints_used_by(
    env: TerraformDir, tree: dict[Path, TerraformDir], interfaces: dict[str, Any]
) -> list[tuple[str, dict[str, str | None]]]:
    """(who, {provider: constraint}) for every module the env reaches, through local modules."""
    found: list[tuple[str, dict[str, str | None]]] = []
    pending, seen = [env], set()
    while pending:
        module = pending.pop()
        for call in module.calls.values():
            if call.is_local:
                target = tree.get((module.path / call.source).resolve())
                if target is not None and target.path not in seen:
                    seen.add(target.path)
                    constraints = {
                        name: spec.get("version")
                        for name, spec in target.required_providers().items()
                    }
                    found.append((call.source, constraints))
                    pending.append(target)
            elif call.key in interfaces:
                found.append((call.key, interfaces[call.key]["required_providers"]))
    return found


WILDCARD_ACTION = re.compile(r"^([a-z0-9-]+:)?\*$")


def iam_wildcards(root: Path) -> list[str]:
    """No Allow statement of an ``aws_iam_policy_document`` has a ``*`` (or ``service:*``)
    action or a ``*`` resource. Deny statements may: a bucket policy denies ``s3:*`` to ``*``."""
    problems = []
    for module in read_tree(root).values():
        for kind, name, body in module.resources("data"):
            if kind != "aws_iam_policy_document":
                continue
            for statement in body.get("statement", []):
                if unquote(statement.get("effect", '"Allow"')) != "Allow":
                    continue
                sid = unquote(statement.get("sid", "(no sid)"))
                actions = [unquote(a) for a in statement.get("actions", [])]
                resources = [unquote(r) for r in statement.get("resources", [])]
                where = f"{_where(module, root)}: {name} {sid}"
                problems += [
                    f"{where}: allows action {a!r}"
                    for a in actions
                    if WILDCARD_ACTION.match(str(a))
                ]
                problems += [f"{where}: allows on resource '*'" for r in resources if r == "*"]
    return problems


INTERPOLATION_ONLY = re.compile(r'"\$\{[^"{}]*\}"')


def fmt_rewrites(root: Path) -> list[str]:
    """What ``terraform fmt`` rewrites on top of hclfmt's layout: a variable's quoted type
    (``type = "string"``) and a string that is one interpolation (``"${var.x}"``)."""
    problems = []
    for module in read_tree(root).values():
        for name, spec in sorted(module.variables.items()):
            if str(spec.get("type", "")).startswith('"'):
                problems.append(f"{_where(module, root)}: variable {name} has a quoted type")
        for file, text in module.texts.items():
            for match in INTERPOLATION_ONLY.finditer(LINE_COMMENT.sub("", text)):
                problems.append(
                    f"{file.relative_to(root)}: {match.group(0)} is an interpolation-only string"
                )
    return problems
