"""Validate Kubernetes manifests offline: built-in kinds and the Dask operator's DaskCluster.

    python deploy/kubernetes/validate.py deploy/kubernetes/zdu-validate.yaml [--k8s 1.33]

Built-in kinds (Job, Service, ...) are checked with kubernetes-validate's schemas in strict
mode (unknown fields are errors). A ``DaskCluster`` is checked against the operator's own CRD
schema: ``dask-operator-templates.yaml`` beside this file is
``dask_kubernetes/operator/customresources/templates.yaml`` from the dask-kubernetes 2026.3.0
wheel, unchanged (BSD-3-Clause, see ``dask-operator-templates.LICENSE``). Its references to
Kubernetes' ``PodSpec`` / ``ServiceSpec`` are resolved with kubernetes-validate's definitions,
and every object of the operator's own part rejects unknown fields, as the strict mode does
(the API server would silently prune them). Needs ``pip install "zarr-dask-utils[deploy]"``.
Exit code: 0 valid, 1 invalid (one line per problem).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

TEMPLATES = Path(__file__).with_name("dask-operator-templates.yaml")
_OPERATOR_REF = "python://dask_kubernetes/operator/customresources/templates.yaml#/definitions/"
_K8S_REF = "python://k8s_crd_resolver/schemata/k8s-1.21.1.json#/definitions/"
_K8S_DEFS = "https://kubernetes.io/api/_definitions.json"


def _k8s_definitions(version: str) -> dict[str, Any]:
    """kubernetes-validate's strict definitions for Kubernetes ``version`` (e.g. ``1.33``)."""
    import kubernetes_validate.utils as kv

    full = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
    path = f"kubernetes-json-schema/v{full}-local-strict/_definitions.json"
    with resources.files("kubernetes_validate").joinpath(path).open() as f:
        return dict(json.load(f))


def _strict(schema: Any) -> Any:
    """Copy of an operator schema where objects with ``properties`` reject unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _rewrite_refs(schema: Any) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(_OPERATOR_REF):
            return {"$ref": "#/definitions/" + ref.removeprefix(_OPERATOR_REF)}
        if isinstance(ref, str) and ref.startswith(_K8S_REF):
            return {"$ref": f"{_K8S_DEFS}#/$defs/" + ref.removeprefix(_K8S_REF)}
        return {k: _rewrite_refs(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rewrite_refs(v) for v in schema]
    return schema


def daskcluster_validator(version: str = "1.33") -> Any:
    """A jsonschema validator for a ``DaskCluster`` resource (apiVersion, kind, metadata, spec)."""
    import jsonschema
    from referencing import Registry, Resource

    definitions = _rewrite_refs(_strict(yaml.safe_load(TEMPLATES.read_text())["definitions"]))
    cluster = copy.deepcopy(definitions["dask.k8s.api.v1.DaskCluster"])
    # The API server adds these to every CRD's schema.
    cluster["properties"].update(
        apiVersion={"const": "kubernetes.dask.org/v1"},
        kind={"const": "DaskCluster"},
        metadata={"$ref": f"{_K8S_DEFS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
    )
    cluster["required"] = sorted({*cluster.get("required", []), "apiVersion", "kind", "metadata"})
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **cluster}
    schema["definitions"] = definitions
    registry = Resource.from_contents(_k8s_definitions(version)) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def problems(document: dict[str, Any], version: str = "1.33") -> list[str]:
    """Every schema violation of one manifest document, as ``kind/name: path: message``."""
    import kubernetes_validate

    name = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
    if document.get("kind") == "DaskCluster":
        errors = daskcluster_validator(version).iter_errors(document)
        return [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as err:  # the first problem only
        return [f"{name}: {'.'.join(map(str, err.absolute_path))}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"{name}: {err.message}"]
    return []


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: exit 0 when every document of every file is valid."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--k8s", default="1.33", help="Kubernetes version (default 1.33)")
    args = parser.parse_args(argv)
    found = []
    for path in args.files:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found += [f"{path}: {p}" for p in problems(document, args.k8s)]
                print(f"{path}: {document['kind']}/{document['metadata']['name']} checked")
    print("\n".join(found) if found else "all valid")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
