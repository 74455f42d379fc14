#!/usr/bin/env python3
"""Extracts the response schemas auxot is checked against from OpenAI's published OpenAPI
document (https://github.com/openai/openai-openapi, `openapi.json`) into one self-contained JSON
Schema (draft 2020-12) file: `{"$defs": {Name: schema}}`, refs rewritten to `#/$defs/Name`.

    git -C openai-openapi show <commit>:openapi.json > /tmp/openapi.json
    python3 tests/openapi/extract.py /tmp/openapi.json <commit> > tests/openapi/openai-subset.json

What changes on the way, and only this:
  * the closure of `$ref`s from ROOTS is kept, every other schema dropped;
  * OpenAPI 3.0's `nullable: true` (still used in places of the 3.1 document) becomes
    `anyOf: [<schema>, {"type": "null"}]` (`nullable: false` is dropped);
  * `$recursiveAnchor`/`$recursiveRef: "#"` (2019-09, unknown to a 2020-12 validator) become a
    plain `$ref` to the enclosing named schema;
  * annotations that never affect validation are dropped: description, title, example(s),
    default, OpenAPI's `discriminator` (the `oneOf` it annotates does the validating) and
    vendor `x-*` extensions.
Any keyword outside KNOWN makes the script fail, so nothing is silently lost.
"""
import json
import sys

ROOTS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "Response",
    "ResponseStreamEvent",
]

PREFIX = "#/components/schemas/"
SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "dependentSchemas"}
SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
SCHEMA_ONE = {
    "items", "additionalProperties", "not", "if", "then", "else", "contains",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems",
}
DROP = {"description", "title", "example", "examples", "default", "discriminator",
        "$recursiveAnchor", "nullable"}
KNOWN = SCHEMA_MAPS | SCHEMA_LISTS | SCHEMA_ONE | {
    "$ref", "type", "enum", "const", "required", "format", "deprecated", "readOnly",
    "writeOnly", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties",
}


def convert(schema, name, refs):
    """The 2020-12 form of `schema` (inside the named schema `name`); collects referenced names."""
    if isinstance(schema, bool):
        return schema
    out = {}
    for key, value in schema.items():
        if key in DROP or key.startswith("x-"):
            continue
        if key == "$recursiveRef":
            assert value == "#" and schema_has_anchor(name), (name, value)
            key, value = "$ref", PREFIX + name
        if key == "$ref":
            assert value.startswith(PREFIX), value
            target = value[len(PREFIX):]
            refs.add(target)
            out[key] = "#/$defs/" + target
        elif key in SCHEMA_MAPS:
            out[key] = {k: convert(v, name, refs) for k, v in value.items()}
        elif key in SCHEMA_LISTS:
            out[key] = [convert(v, name, refs) for v in value]
        elif key in SCHEMA_ONE:
            out[key] = convert(value, name, refs)
        elif key in KNOWN:
            out[key] = value
        else:
            raise SystemExit(f"{name}: unknown keyword {key!r}")
    if schema.get("nullable") is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def schema_has_anchor(name):
    return SCHEMAS[name].get("$recursiveAnchor") is True


def main():
    global SCHEMAS
    if len(sys.argv) != 3:
        raise SystemExit("usage: extract.py OPENAPI_JSON SOURCE_COMMIT > openai-subset.json")
    document = json.load(open(sys.argv[1]))
    SCHEMAS = document["components"]["schemas"]
    defs, todo = {}, list(ROOTS)
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        refs = set()
        defs[name] = convert(SCHEMAS[name], name, refs)
        todo.extend(sorted(refs))
    subset = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Extracted by tests/openapi/extract.py from openai/openai-openapi "
            f"{sys.argv[2]}:openapi.json (OpenAPI {document['openapi']}, "
            f"API {document['info']['version']}); roots: {', '.join(ROOTS)}."
        ),
        "$defs": dict(sorted(defs.items())),
    }
    json.dump(subset, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
