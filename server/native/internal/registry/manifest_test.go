package registry

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"volspike/server/native/internal/contract"
)

const zeroSha = "0000000000000000000000000000000000000000000000000000000000000000"

// manifestDoc is a valid manifest (checkManifest does not look at files) with extra
// top-level members appended as written: `, "key": value`.
func manifestDoc(extra string) string {
	return `{"name": "m", "feature_names": ["a", "b"], "decision_threshold": 0.5, "library": "model.so", ` +
		`"library_sha256": "` + zeroSha + `"` + extra + `}`
}

// without drops one member of the valid manifest.
func without(field string) string {
	var doc map[string]any
	_ = json.Unmarshal([]byte(manifestDoc("")), &doc)
	delete(doc, field)
	out, _ := json.Marshal(doc)
	return string(out)
}

func bins(edges int) string {
	e, s := make([]string, edges), make([]string, edges+2)
	for i := range e {
		e[i] = fmt.Sprint(i)
	}
	for i := range s {
		s[i] = "0.1"
	}
	return `{"edges": [` + strings.Join(e, ", ") + `], "shares": [` + strings.Join(s, ", ") + `]}`
}

func drift(a, b, prediction string) string {
	return `, "drift": {"features": {"a": ` + a + `, "b": ` + b + `}, "prediction": ` + prediction + `}`
}

func nested(lists int) string { // params at depth 2, then `lists` lists
	return `, "params": {"x": ` + strings.Repeat("[", lists) + strings.Repeat("]", lists) + `}`
}

func TestBuiltManifestsPassTheCheck(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "..", "..", "compiled_models", "*", manifestFile))
	if len(paths) == 0 {
		t.Fatal("no artifact is built: run `make models`")
	}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := checkManifest(raw)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		m, err := manifestFromChecked(doc, raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var loose map[string]any // what the lax parse says, for comparison only
		_ = json.Unmarshal(raw, &loose)
		if m.Name != loose["name"] || m.DecisionThreshold != loose["decision_threshold"] ||
			len(m.FeatureNames) != len(loose["feature_names"].([]any)) || m.JSON != string(raw) ||
			m.Description != loose["description"] || m.LibrarySha256 != loose["library_sha256"] {
			t.Errorf("%s: built %+v", path, m)
		}
		if _, present := loose["calibration"]; present {
			if _, err := parseCalibration(m.CalibrationJSON); err != nil {
				t.Errorf("%s: calibration: %v", path, err)
			}
		}
		if _, err := LoadModel(filepath.Dir(path)); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// Every message of the check, each for a document with that one problem. Mutations: drop the
// duplicate-key test in object() and the 'twice' cases fail; skip checkText on keys and the
// U+FFFD key case fails; allow one more level and the depth-33 cases fail.
func TestManifestCheckMessages(t *testing.T) {
	long := strings.Repeat("k", 40)
	notText := "manifest holds text that is not valid Unicode (a lone surrogate or U+FFFD)"
	mustBe := func(f string) string {
		for _, x := range contract.ManifestFields {
			if x.Name == f {
				return "manifest field '" + f + "' must be " + contract.ManifestKinds[x.Kind]
			}
		}
		panic(f)
	}
	names := func(n int, prefix string) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf(`"%s%d"`, prefix, i)
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	cases := []struct{ doc, want string }{
		// step 2
		{"{\"name\": \"\xff\"}", "manifest is not valid UTF-8"},
		{manifestDoc(", \"description\": \"\xed\xa0\x80\""), "manifest is not valid UTF-8"}, // a surrogate encoded
		// step 4: while decoding
		{manifestDoc(nested(31)), "manifest nests deeper than 32 levels"},
		{manifestDoc(`, "params": {"x": ` + strings.Repeat(`{"y": `, 31) + "1" + strings.Repeat("}", 31) + "}"), "manifest nests deeper than 32 levels"},
		{strings.Repeat("[", 33) + strings.Repeat("]", 33), "manifest nests deeper than 32 levels"},
		{manifestDoc(`, "name": "m"`), "manifest has the key 'name' twice"},
		{manifestDoc(`, "params": {"` + long + `": 1, "` + long + `": 2}`), "manifest has the key '" + long[:32] + "...' twice"},
		{manifestDoc(`, "params": {"x": 1e400}`), "manifest holds a number out of range: 1e400"},
		{manifestDoc(`, "params": {"x": -1E+400}`), "manifest holds a number out of range: -1E+400"},
		{manifestDoc(`, "params": {"x": [` + strings.Repeat("9", 400) + `]}`), "manifest holds a number out of range: " + strings.Repeat("9", 32) + "..."},
		{`{"decision_threshold": 1e999}`, "manifest holds a number out of range: 1e999"},
		{manifestDoc(`, "description": "\ud800"`), notText},
		{manifestDoc(`, "description": "x\udfffy"`), notText},
		{manifestDoc(`, "description": "\ud800\ud800"`), notText},
		{manifestDoc(`, "description": "a` + "\uFFFD" + `"`), notText},
		{manifestDoc(`, "description": "\ufffd"`), notText},
		{manifestDoc(`, "params": {"` + "\uFFFD" + `": 1}`), notText},
		{manifestDoc(`, "params": {"x": ["ok", "\udc00"]}`), notText},
		// step 3 (a syntax error after a refused value: the value speaks first, in document order)
		{manifestDoc(`, "params": {"x": 1e400,}`), "manifest holds a number out of range: 1e400"},
		// step 5
		{`["name"]`, "manifest is not a JSON object"},
		{`"manifest"`, "manifest is not a JSON object"},
		{`null`, "manifest is not a JSON object"},
		// step 6, in field order
		{`{}`, "manifest field 'name' is missing"},
		{without("name"), "manifest field 'name' is missing"},
		{without("feature_names"), "manifest field 'feature_names' is missing"},
		{without("decision_threshold"), "manifest field 'decision_threshold' is missing"},
		{without("library"), "manifest field 'library' is missing"},
		{without("library_sha256"), "manifest field 'library_sha256' is missing"},
		{`{"name": "", "feature_names": 3}`, mustBe("name")},
		{`{"name": ".hidden"}`, mustBe("name")},
		{`{"name": "a/b"}`, mustBe("name")},
		{`{"name": "m\n"}`, mustBe("name")},
		{`{"name": "` + strings.Repeat("n", 65) + `"}`, mustBe("name")},
		{`{"name": 3}`, mustBe("name")},
		{`{"name": "m", "feature_names": []}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": ["a", "a"]}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": ["1a"]}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": ["a-b"]}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": [1]}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": "a"}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": ["` + strings.Repeat("f", 65) + `"]}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": ` + names(257, "f") + `}`, mustBe("feature_names")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": true}`, mustBe("decision_threshold")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": "0.5"}`, mustBe("decision_threshold")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": -0.01}`, mustBe("decision_threshold")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": 1.5}`, mustBe("decision_threshold")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": null}`, mustBe("decision_threshold")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": 1, "library": 7}`, mustBe("library")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": 0, "library": "` + strings.Repeat("l", 4097) + `"}`, mustBe("library")},
		{`{"name": "m", "feature_names": ["a"], "decision_threshold": 0, "library": "x", "library_sha256": "` + strings.ToUpper(zeroSha[:63]) + `A"}`, mustBe("library_sha256")},
		{manifestDoc(`, "calibration": []`), mustBe("calibration")},
		{manifestDoc(`, "calibration": null`), mustBe("calibration")},
		{manifestDoc(`, "drift": ["x"]`), mustBe("drift")},
		{manifestDoc(`, "drift": null`), mustBe("drift")},
		{manifestDoc(drift(`[[0], [0.1, 0.1, 0.1]]`, bins(1), bins(1))), mustBe("drift")}, // bins as lists
		{manifestDoc(drift(bins(1), bins(1), `[[0], [0.1, 0.1, 0.1]]`)), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [[0, 1]], "shares": [0.1, 0.1, 0.1]}`, bins(1), bins(1))), mustBe("drift")}, // 2-D edges
		{manifestDoc(drift(bins(4000), bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(bins(33), bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [], "shares": [0.5, 0.5, 0]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [0, 0], "shares": [0, 0, 0, 0]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [1, 0], "shares": [0, 0, 0, 0]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [true], "shares": [0, 0, 0]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [0], "shares": [0, 0]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [0], "shares": [0, 0, 1.5]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [0], "shares": [0, 0, -0.5]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [0], "shares": [0, 0, "0"]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [0], "shares": [0, 0, 0], "x": 1}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(drift(`{"edges": [0]}`, bins(1), bins(1))), mustBe("drift")},
		{manifestDoc(`, "drift": {"features": {"a": ` + bins(1) + `}, "prediction": ` + bins(1) + `}`), mustBe("drift")},
		{manifestDoc(`, "drift": {"features": {"a": ` + bins(1) + `, "b": ` + bins(1) + `, "c": ` + bins(1) + `}, "prediction": ` + bins(1) + `}`), mustBe("drift")},
		{manifestDoc(`, "drift": {"features": {"a": ` + bins(1) + `, "B": ` + bins(1) + `}, "prediction": ` + bins(1) + `}`), mustBe("drift")},
		{manifestDoc(`, "drift": {"features": {"a": ` + bins(1) + `, "b": ` + bins(1) + `}}`), mustBe("drift")},
		{manifestDoc(`, "drift": {"features": {"a": ` + bins(1) + `, "b": ` + bins(1) + `}, "prediction": ` + bins(1) + `, "x": {}}`), mustBe("drift")},
		{manifestDoc(`, "trained_on": ["x"]`), mustBe("trained_on")},
		{manifestDoc(`, "description": 5`), mustBe("description")},
		{manifestDoc(`, "description": null`), mustBe("description")},
		{manifestDoc(`, "description": "` + strings.Repeat("é", 4097) + `"`), mustBe("description")},
		{manifestDoc(`, "created": {}`), mustBe("created")},
		{manifestDoc(`, "versions": []`), mustBe("versions")},
		{manifestDoc(`, "metrics": "x"`), mustBe("metrics")},
		// step 7, after every field is checked
		{manifestDoc(`, "Decision_Threshold": 0.9`), "manifest field 'Decision_Threshold' is not in the manifest schema"},
		{manifestDoc(`, "LIBRARY": "../evil.so"`), "manifest field 'LIBRARY' is not in the manifest schema"},
		{manifestDoc(`, "zz": 1, "aa": 2`), "manifest field 'zz' is not in the manifest schema"},
		{manifestDoc(`, "` + long + `": 1`), "manifest field '" + long[:32] + "...' is not in the manifest schema"},
		{`{"LIBRARY": "x", "name": "m"}`, "manifest field 'feature_names' is missing"},
		{`{"Decision_Threshold": 0.1, "name": "m", "feature_names": ["a"], "decision_threshold": 7}`, mustBe("decision_threshold")},
	}
	for _, c := range cases {
		_, err := checkManifest([]byte(c.doc))
		if err == nil || err.Error() != c.want {
			t.Errorf("%.120s: got %v, want %q", c.doc, err, c.want)
		}
	}
}

func TestManifestSyntaxErrorsAreUnreadable(t *testing.T) {
	for _, doc := range []string{"", "   ", "{", `{"name": "m"`, `{"name" "m"}`, `{"name": "m",}`, `{name: 1}`,
		manifestDoc(`, "params": {"x": NaN}`), manifestDoc(`, "params": {"x": Infinity}`), manifestDoc(`, "params": {"x": -Infinity}`),
		manifestDoc(`, "params": {"x": 01}`), manifestDoc("") + " x", manifestDoc("") + "{}", manifestDoc("") + `"`, "\ufeff" + manifestDoc(""),
		`{"description": "\x"}`, "{\"description\": \"a\tb\"}"} {
		_, err := checkManifest([]byte(doc))
		if err == nil || !strings.HasPrefix(err.Error(), "unreadable manifest: ") {
			t.Errorf("%.120q: got %v, want 'unreadable manifest: ...'", doc, err)
		}
	}
}

func TestManifestsAtTheLimitsPass(t *testing.T) {
	names := make([]string, contract.ManifestMaxFeatures)
	features := make([]string, contract.ManifestMaxFeatures)
	for i := range names {
		names[i] = fmt.Sprintf(`"f_%d"`, i)
		features[i] = fmt.Sprintf(`"f_%d": %s`, i, bins(contract.ManifestDriftMaxEdges))
	}
	for _, doc := range []string{
		manifestDoc(nested(30)), // depth 32
		manifestDoc(`, "params": {"tiny": 1e-400, "big": 1.7976931348623157e308, "int": -9007199254740993, "u": "\u00e9\ud83d\ude00"}`),
		manifestDoc(`, "description": "` + strings.Repeat("é", contract.ManifestTextChars) + `"`), // characters, not bytes
		manifestDoc(`, "drift": {}, "calibration": {}, "trained_on": ""`),
		manifestDoc(drift(`{"edges": [], "shares": [0, 1]}`, bins(1), bins(0))), // an all-NaN feature (built artifacts have one)
		manifestDoc(drift(bins(1), bins(contract.ManifestDriftMaxEdges), `{"edges": [-1e300, 0, 0.5], "shares": [0, 1, 0.25, 0.75, 1]}`)),
		`{"name": "` + strings.Repeat("N", 64) + `", "feature_names": [` + strings.Join(names, ", ") + `], "decision_threshold": 1, ` +
			`"library": "x", "library_sha256": "` + zeroSha + `", "drift": {"features": {` + strings.Join(features, ", ") +
			`}, "prediction": ` + bins(1) + `}}`,
		`{"name": "_-.x", "feature_names": ["_"], "decision_threshold": 0, "library": "x", "library_sha256": "` + zeroSha + `"}`,
	} {
		if _, err := checkManifest([]byte(doc)); err != nil {
			t.Errorf("%.120s: %v", doc, err)
		}
	}
}

func TestAManifestOverTheSizeLimitIsRefusedBySize(t *testing.T) {
	pad := contract.ManifestMaxBytes + 1 - len(manifestDoc(`, "description": ""`))
	doc := manifestDoc(`, "description": "` + strings.Repeat("x", pad) + `"`)
	if len(doc) != contract.ManifestMaxBytes+1 {
		t.Fatal(len(doc))
	}
	_, err := checkManifest([]byte(doc))
	if want := fmt.Sprintf("manifest is %d bytes; the limit is 1048576", contract.ManifestMaxBytes+1); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	atLimit := manifestDoc(`, "description": "` + strings.Repeat("x", pad-1) + `"`)
	if _, err := checkManifest([]byte(atLimit)); len(atLimit) != contract.ManifestMaxBytes || err == nil || !strings.Contains(err.Error(), "'description' must be") {
		t.Fatalf("at the limit: got %v, want the size to pass", err) // the description is too long, not the file
	}
	// From the file: read at most one byte past the limit, the size from the file system.
	folder := copyArtifact(t, t.TempDir(), "huge", func(doc map[string]any, lib []byte) []byte {
		doc["params"] = map[string]any{"pad": strings.Repeat("x", 2*contract.ManifestMaxBytes)}
		return lib
	})
	st, _ := os.Stat(filepath.Join(folder, manifestFile))
	_, err = LoadModel(folder)
	if want := fmt.Sprintf("artifact huge: manifest is %d bytes; the limit is 1048576", st.Size()); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// The loader refuses what the check refuses, and reads fields by exact key only. Mutation:
// skip step 7 in checkManifest and the case variants load.
func TestLoadModelRefusesCaseVariantKeys(t *testing.T) {
	for key, value := range map[string]any{"Decision_Threshold": 0.99, "LIBRARY": "../x.so", "Name": "other"} {
		folder := copyArtifact(t, t.TempDir(), "variant", func(doc map[string]any, lib []byte) []byte {
			doc[key] = value
			return lib
		})
		_, err := LoadModel(folder)
		if want := "artifact variant: manifest field '" + key + "' is not in the manifest schema"; err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %q", key, err, want)
		}
	}
	doc, err := checkManifest([]byte(manifestDoc(`, "description": "d", "created": "c", "trained_on": "t", "calibration": {"method": "isotonic", "x": [0, 1], "y": [0.25, 1]}`)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifestFromChecked(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	cal, err := parseCalibration(m.CalibrationJSON)
	if err != nil || m.Name != "m" || m.DecisionThreshold != 0.5 || strings.Join(m.FeatureNames, ",") != "a,b" ||
		m.Library != "model.so" || m.LibrarySha256 != zeroSha || m.Description != "d" || m.Created != "c" ||
		m.TrainedOn != "t" || cal == nil || cal.Y[0] != 0.25 {
		t.Fatalf("got %+v, %v, %v", m, cal, err)
	}
	// Were a case variant ever let through, it would still not be read: keys are exact.
	doc["Decision_Threshold"], doc["NAME"] = json.Number("0.99"), "other"
	if m, _ := manifestFromChecked(doc, nil); m.DecisionThreshold != 0.5 || m.Name != "m" {
		t.Fatalf("read a case variant: %+v", m)
	}
	if m, _ := manifestFromChecked(checkedManifest{}, nil); m.CalibrationJSON != nil {
		t.Fatal("an absent calibration must stay absent (identity)")
	}
}

func TestTextIsCountedInCharacters(t *testing.T) {
	s := strings.Repeat("€", contract.ManifestTextChars)
	if utf8.RuneCountInString(s) != contract.ManifestTextChars || !manifestKindOK("text", s, nil) || manifestKindOK("text", s+"x", nil) {
		t.Fatal("text limit is in code points")
	}
}
