"""The strict manifest check (compiled_models/manifest.py ``check``, proto/contract.toml
[manifest]): every refusal with its message, in the contract's order, and the built
manifests pass. The native server (server/native/internal/registry/manifest.go) gives the
same verdicts and messages; tests/server/test_differential.py compares the two on served artifacts.

Mutations (seen failing): drop the duplicate-key check in ``_Decoder._object`` and
test_a_key_given_twice_is_refused fails; check the unknown keys case-insensitively and
test_a_case_variant_of_a_field_is_refused fails."""

from __future__ import annotations

import glob
import json
import shutil

import pytest

from compiled_models import manifest_schema_gen as schema
from compiled_models import runtime
from compiled_models.manifest import Manifest, check
from compiled_models.manifest_schema_gen import NAME_CHARS_IN_ERROR
from server import contract_gen as contract
from tests.conftest import ARTIFACTS, ROOT, artifact_dir

DRIFT = f"manifest field 'drift' must be {schema.KINDS['drift']}"


@pytest.fixture(scope="module")
def real() -> dict:
    """A built manifest, as a document to edit."""
    return json.loads((artifact_dir("xgb-v2") / "manifest.json").read_bytes())


def refusal(data: bytes | str | dict) -> str:
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with pytest.raises(ValueError) as exc:
        check(data)
    return str(exc.value)


def test_the_built_manifests_pass():
    paths = sorted(glob.glob(str(ROOT / "compiled_models" / "*" / "manifest.json")))
    assert {p.split("/")[-2] for p in paths} >= set(ARTIFACTS)
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        doc = check(data)
        assert list(doc) == list(json.loads(data))  # every key, in document order
        assert Manifest.from_raw(doc) == Manifest.read(artifact_dir(path.split("/")[-2]))


def test_the_quoted_names_are_cut_as_the_contract_says():
    assert NAME_CHARS_IN_ERROR == contract.NAME_CHARS_IN_ERROR


def test_a_case_variant_of_a_field_is_refused(real):
    """Go's json.Unmarshal matches keys case-insensitively and takes the last: a
    "Decision_Threshold" after the checked key would have been the threshold served."""
    doc = {**real, "Decision_Threshold": 0.0}
    assert refusal(doc) == "manifest field 'Decision_Threshold' is not in the manifest schema"
    doc = {**real, "LIBRARY": "../../evil.so"}
    assert refusal(doc) == "manifest field 'LIBRARY' is not in the manifest schema"


def test_an_unknown_key_is_refused_with_its_name_cut(real):
    assert refusal({**real, "notes": "x"}) == (
        "manifest field 'notes' is not in the manifest schema"
    )
    long = "k" * 100
    assert refusal({**real, long: 1}) == (
        f"manifest field '{'k' * 32}...' is not in the manifest schema"
    )
    # the first unknown key in document order, after every field's check
    doc = {"zz_first": 1, **real, "aa_second": 2}
    assert refusal(doc) == "manifest field 'zz_first' is not in the manifest schema"
    assert refusal({**real, "zz": 1, "name": ".bad"}) == (
        f"manifest field 'name' must be {schema.KINDS['artifact']}"
    )


def test_a_key_given_twice_is_refused(real):
    text = json.dumps(real)
    twice = text[:-1] + ', "decision_threshold": 0.0}'
    assert refusal(twice) == "manifest has the key 'decision_threshold' twice"
    nested = '{"metrics": {"a": 1, "a": 2}}'
    assert refusal(nested) == "manifest has the key 'a' twice"
    long = "d" * 40
    assert refusal(f'{{"{long}": 1, "{long}": 2}}') == f"manifest has the key '{'d' * 32}...' twice"


def test_nesting_deeper_than_the_limit_is_refused():
    ok = '{"params": ' + "[" * 31 + "]" * 31 + "}"  # 32 levels with the top-level object
    assert refusal(ok) == "manifest field 'name' is missing"
    deep = '{"params": ' + "[" * 32 + "]" * 32 + "}"
    assert refusal(deep) == "manifest nests deeper than 32 levels"
    assert refusal("[" * 100_000) == "manifest nests deeper than 32 levels"
    objects = '{"a": ' * 33 + "1" + "}" * 33
    assert refusal(objects) == "manifest nests deeper than 32 levels"


@pytest.mark.parametrize(
    ("literal", "shown"),
    [
        ("1e400", "1e400"),
        ("-1e400", "-1e400"),
        ("9" * 400, "9" * 32 + "..."),
        ("-" + "2" * 309, "-" + "2" * 31 + "..."),  # -2.2e308
    ],
)
def test_a_number_out_of_float64_range_is_refused(literal, shown):
    assert refusal(f'{{"params": {{"x": {literal}}}}}') == (
        f"manifest holds a number out of range: {shown}"
    )


def test_small_and_large_finite_numbers_pass_the_decoder():
    doc = '{"params": {"tiny": 1e-400, "big": 1.7e308, "int": ' + "9" * 300 + "}}"
    assert refusal(doc) == "manifest field 'name' is missing"  # decoded: the fields come next


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(word):
    assert refusal(f'{{"params": {{"x": {word}}}}}') == f"unreadable manifest: {word} is not JSON"


def test_invalid_utf8_is_refused(real):
    data = json.dumps(real).encode()
    assert refusal(data.replace(b'"xgb-v2"', b'"xgb-v2\xff"', 1)) == ("manifest is not valid UTF-8")
    assert refusal(b'{"a": "\xed\xa0\x80"}') == "manifest is not valid UTF-8"  # a surrogate


BAD_TEXT = "manifest holds text that is not valid Unicode (a lone surrogate or U+FFFD)"


@pytest.mark.parametrize(
    "doc",
    [
        '{"description": "\\ud800"}',  # a lone surrogate, escaped
        '{"description": "\\udc00 tail"}',
        '{"description": "a\ufffdb"}',  # U+FFFD written as such
        '{"description": "\\ufffd"}',  # and escaped
        '{"\\ud800": 1}',  # in a key
        '{"metrics": {"x": ["ok", "\ufffd"]}}',  # anywhere
    ],
)
def test_text_that_is_not_valid_unicode_is_refused(doc):
    assert refusal(doc) == BAD_TEXT


def test_an_escaped_surrogate_pair_is_one_valid_character(real):
    doc = json.dumps({**real, "description": "\U0001f600"})  # written "\ud83d\ude00"
    assert "\\ud83d\\ude00" in doc
    assert check(doc.encode())["description"] == "\U0001f600"


def test_a_manifest_over_the_size_limit_is_refused(real):
    data = json.dumps({**real, "metrics": {"pad": "x" * schema.MANIFEST_MAX_BYTES}}).encode()
    assert refusal(data) == (
        f"manifest is {len(data)} bytes; the limit is {schema.MANIFEST_MAX_BYTES}"
    )
    assert refusal(b"{" * (schema.MANIFEST_MAX_BYTES + 1)).startswith(
        f"manifest is {schema.MANIFEST_MAX_BYTES + 1} bytes"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b'{"a" 1}',
        b'{"a": 1,}',
        b"{'a': 1}",
        b'{"a": 01}',
        b'{"a": 1} {}',
        b"\xef\xbb\xbf{}",
    ],
)
def test_a_syntax_error_is_unreadable(data):
    assert refusal(data).startswith("unreadable manifest: ")


@pytest.mark.parametrize("data", [b"[]", b'"text"', b"1", b"null", b" true "])
def test_the_top_level_must_be_an_object(data):
    assert refusal(data) == "manifest is not a JSON object"


def test_decoding_refusals_come_in_document_order():
    """As the native token walker meets them: a problem inside a value before a later key."""
    assert refusal('{"a": 1e400, "a": 1}') == "manifest holds a number out of range: 1e400"
    assert refusal('{"a": 1, "a": 1e400}') == "manifest has the key 'a' twice"
    deep_then_number = '{"a": ' + "[" * 32 + "1e400" + "]" * 32 + "}"
    assert refusal(deep_then_number) == "manifest nests deeper than 32 levels"
    assert refusal('{"a": "\\ud800", "a": 1}') == BAD_TEXT
    assert refusal('[1e400, "\\ud800"]') == "manifest holds a number out of range: 1e400"
    assert refusal('{"a": 1, "a": 2} trailing').startswith("manifest has the key")


@pytest.mark.parametrize("field", [f for f, _, required in schema.FIELDS if required])
def test_a_missing_required_field_is_named(real, field):
    doc = {k: v for k, v in real.items() if k != field}
    assert refusal(doc) == f"manifest field '{field}' is missing"


def test_fields_are_checked_in_the_schema_order(real):
    doc = {**real, "library_sha256": "ABC", "name": 5}  # name comes first in FIELDS
    assert refusal(doc) == f"manifest field 'name' must be {schema.KINDS['artifact']}"


def test_the_optional_fields_may_be_left_out(real):
    required = {f for f, _, r in schema.FIELDS if r}
    doc = {k: v for k, v in real.items() if k in required}
    assert set(check(json.dumps(doc).encode())) == required


OK_VALUES = {
    "artifact": ["a", "xgb-v2", "A_b.c-9", "-x", "_", "a" * 64],
    "features": [["a"], ["_x", "Y_1"], [f"f{i}" for i in range(256)]],
    "probability": [0, 1, 0.0, 1.0, 0.5, 1e-300],
    "sha256": ["0" * 64, "0123456789abcdef" * 4],
    "text": ["", "x" * 4096, "\U0001f600" * 4096, "é" * 4096],
    "calibration": [{}, {"method": "isotonic", "x": [0, 1], "y": [0, 1]}],
    "object": [{}, {"a": [1, {"b": None}]}],
}
BAD_VALUES = {
    "artifact": [".hidden", "", "a/b", "a" * 65, "é", 5, None, ["a"], "a\n", " a"],
    "features": [
        [],
        ["a", "a"],
        ["1x"],
        ["a-b"],
        [""],
        ["a" * 65],
        [f"f{i}" for i in range(257)],
        "a",
        [1],
        [["a"]],
        {"a": 1},
    ],
    "probability": [True, False, -0.01, 1.01, "0.5", None, [0.5], 1e300],
    "sha256": ["A" * 64, "0" * 63, "0" * 65, "g" * 64, 0, None],
    "text": ["x" * 4097, "\U0001f600" * 4097, 5, None, ["x"], {"x": 1}, True],
    "calibration": [[], "isotonic", 1, None],
    "object": [[], "x", 1, None, True],
}
FIELD_OF_KIND = {
    "artifact": "name",
    "features": "feature_names",
    "probability": "decision_threshold",
    "sha256": "library_sha256",
    "text": "description",
    "calibration": "calibration",
    "object": "metrics",
}


def test_every_kind_of_the_contract_is_tested():
    assert set(FIELD_OF_KIND) | {"drift"} == set(schema.KINDS)
    assert {k for _, k, _ in schema.FIELDS} == set(schema.KINDS)


@pytest.mark.parametrize("kind", sorted(FIELD_OF_KIND))
def test_each_kind_refuses_what_it_is_not(real, kind):
    field = FIELD_OF_KIND[kind]
    base = {**real, "drift": {}}  # the drift bins follow feature_names: checked apart
    for value in OK_VALUES[kind]:
        doc = check(json.dumps({**base, field: value}).encode())
        assert doc[field] == value
    for value in BAD_VALUES[kind]:
        got = refusal({**base, field: value})
        assert got == f"manifest field '{field}' must be {schema.KINDS[kind]}", value


def bins(edges: list, shares: list | None = None) -> dict:
    if shares is None:
        shares = [1.0 / (len(edges) + 2)] * (len(edges) + 2) if isinstance(edges, list) else []
    return {"edges": edges, "shares": shares}


def drift(real: dict, **features) -> dict:
    feats = {n: bins([0.0, 1.0]) for n in real["feature_names"]}
    feats.update(features)
    return {"features": feats, "prediction": bins([0.5])}


def test_valid_drift_bins_pass(real):
    for value in [{}, drift(real), drift(real, ret_1s_z=bins([]))]:
        assert check(json.dumps({**real, "drift": value}).encode())["drift"] == value
    many = bins([float(i) for i in range(schema.MANIFEST_DRIFT_MAX_EDGES)])
    assert check(json.dumps({**real, "drift": drift(real, ret_1s_z=many)}).encode())
    reordered = {**real, "feature_names": real["feature_names"][::-1], "drift": drift(real)}
    assert check(json.dumps(reordered).encode())  # set equality, not order


def test_invalid_drift_bins_are_refused(real):
    name = real["feature_names"][0]
    d = drift(real)
    cases = [
        ["x"],
        [],
        "bins",
        {"features": d["features"]},
        {"prediction": d["prediction"]},
        {**d, "extra": {}},
        {**d, "features": []},
        {**d, "features": {k: v for k, v in d["features"].items() if k != name}},
        {**d, "features": {**d["features"], "not_a_feature": bins([0.0])}},
        {**d, "prediction": [[0.0], [0.5, 0.5]]},  # bins as lists
        drift(real, **{name: [[0.0, 1.0], [0.25, 0.25, 0.25, 0.25]]}),
        drift(real, **{name: bins([[0.0, 1.0]], [0.5, 0.5, 0.0])}),  # 2-D edges
        drift(real, **{name: bins([[0.0], [1.0]])}),
        drift(real, **{name: bins([float(i) for i in range(4000)])}),  # 4000 edges
        drift(real, **{name: bins([float(i) for i in range(33)])}),
        drift(real, **{name: bins([1.0, 1.0])}),  # not strictly increasing
        drift(real, **{name: bins([2.0, 1.0])}),
        drift(real, **{name: bins([0.0, "1"])}),
        drift(real, **{name: bins([0.0, True])}),
        drift(real, **{name: bins([0.0], [0.5, 0.5])}),  # len(edges) + 2 shares
        drift(real, **{name: bins([0.0], [0.5, 0.5, 0.0, 0.0])}),
        drift(real, **{name: bins([0.0], [0.5, 0.5, 1.5])}),
        drift(real, **{name: bins([0.0], [0.5, 0.5, -0.1])}),
        drift(real, **{name: bins([0.0], [0.5, 0.5, None])}),
        drift(real, **{name: {"edges": [0.0], "shares": [0, 0, 1], "extra": 1}}),
        drift(real, **{name: {"edges": [0.0]}}),
        drift(real, **{name: {"Edges": [0.0], "shares": [0, 0, 1]}}),
    ]
    for value in cases:
        assert refusal({**real, "drift": value}) == DRIFT, value


def test_feature_names_are_checked_before_the_drift_that_follows_them(real):
    doc = {**real, "feature_names": ["a", "a"], "drift": ["x"]}
    assert refusal(doc) == f"manifest field 'feature_names' must be {schema.KINDS['features']}"


def test_the_loader_wraps_the_refusal_with_the_artifacts_folder(tmp_path):
    folder = tmp_path / "xgb-v2"
    shutil.copytree(artifact_dir("xgb-v2"), folder)
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(text.replace('"library"', '"LIBRARY"', 1))
    with pytest.raises(runtime.ArtifactError) as exc:
        runtime.load(folder)
    assert str(exc.value) == "artifact xgb-v2: manifest field 'library' is missing"
    (folder / "manifest.json").write_bytes(b'{"name": "xgb-v2",}')
    with pytest.raises(runtime.ArtifactError, match=r"^artifact xgb-v2: unreadable manifest: "):
        runtime.load(folder)


def test_the_loader_keeps_the_manifest_as_written():
    model = runtime.load(artifact_dir("xgb-v1"))
    assert model.manifest_json == (artifact_dir("xgb-v1") / "manifest.json").read_text()


def test_the_build_refuses_to_write_what_the_servers_would_refuse(tmp_path):
    m = Manifest.read(artifact_dir("xgb-v1"))
    Manifest(**{**m.__dict__, "description": "x" * 4096}).write(tmp_path)
    assert Manifest.read(tmp_path).description == "x" * 4096
    too_long = Manifest(**{**m.__dict__, "description": "x" * 4097})
    with pytest.raises(ValueError) as exc:
        too_long.write(tmp_path / "never")
    assert str(exc.value) == (
        "refusing to write the manifest of xgb-v1: "
        f"manifest field 'description' must be {schema.KINDS['text']}"
    )
    bad_feature = Manifest(**{**m.__dict__, "feature_names": ("price", "a-b")})
    with pytest.raises(ValueError, match="manifest field 'feature_names' must be"):
        bad_feature.write(tmp_path)
    assert not (tmp_path / "never").exists()
