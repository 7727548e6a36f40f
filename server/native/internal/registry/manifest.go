package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"volspike/server/native/internal/contract"
)

// The strict manifest check (proto/contract.toml [manifest]): the same verdict and message
// as the Python server's (compiled_models/manifest.py) for every document. The manifest is
// decoded once, by a token walker that sees every key and number as written: json.Unmarshal
// into a struct would match keys case-insensitively and take the last of two, so a
// "Decision_Threshold" beside the checked "decision_threshold" would win.

// checkedManifest is a manifest that passed checkManifest: its top-level object, the values
// being map[string]any, []any, string, json.Number, bool or nil.
type checkedManifest map[string]any

// numberCharsInError: a number's literal text in an error is cut to this many characters.
const numberCharsInError = 32

var (
	artifactName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$`)
	featureName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	sha256Hex    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// checkManifest checks raw (the bytes of manifest.json) in the order of the contract; the
// first failure is the error.
func checkManifest(raw []byte) (checkedManifest, error) {
	if len(raw) > contract.ManifestMaxBytes {
		return nil, fmt.Errorf("manifest is %d bytes; the limit is %d", len(raw), contract.ManifestMaxBytes)
	}
	if !utf8.Valid(raw) {
		return nil, errors.New("manifest is not valid UTF-8")
	}
	doc, keys, err := decodeManifest(raw)
	if err != nil {
		return nil, err
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("manifest is not a JSON object")
	}
	for _, f := range contract.ManifestFields {
		v, present := obj[f.Name]
		if !present {
			if f.Required {
				return nil, fmt.Errorf("manifest field '%s' is missing", f.Name)
			}
			continue
		}
		if !manifestKindOK(f.Kind, v, obj) {
			return nil, fmt.Errorf("manifest field '%s' must be %s", f.Name, contract.ManifestKinds[f.Kind])
		}
	}
	known := make(map[string]bool, len(contract.ManifestFields))
	for _, f := range contract.ManifestFields {
		known[f.Name] = true
	}
	for _, k := range keys {
		if !known[k] {
			return nil, fmt.Errorf("manifest field '%s' is not in the manifest schema", contract.Cut(k, contract.NameCharsInError))
		}
	}
	return checkedManifest(obj), nil
}

// manifestWalker decodes one JSON document token by token.
type manifestWalker struct {
	dec *json.Decoder
}

// decodeManifest decodes raw, refusing (in document order) nesting deeper than
// contract.ManifestMaxDepth, a key given twice in one object, a number whose float64 is not
// finite and text holding U+FFFD (which is also what a lone-surrogate escape decodes to).
// keys are the top-level object's keys in document order (nil if it is not an object).
func decodeManifest(raw []byte) (doc any, keys []string, err error) {
	w := &manifestWalker{dec: json.NewDecoder(bytes.NewReader(raw))}
	w.dec.UseNumber()
	tok, err := w.token()
	if err != nil {
		return nil, nil, err
	}
	if tok == json.Delim('{') {
		doc, keys, err = w.object(1)
	} else {
		doc, err = w.value(tok, 0)
	}
	if err != nil {
		return nil, nil, err
	}
	// Anything but white space after the document: as json.Unmarshal words it.
	rest := raw[w.dec.InputOffset():]
	if i := bytes.IndexFunc(rest, func(r rune) bool { return !strings.ContainsRune(" \t\r\n", r) }); i >= 0 {
		r, _ := utf8.DecodeRune(rest[i:])
		return nil, nil, fmt.Errorf("unreadable manifest: invalid character %s after top-level value", quoteChar(r))
	}
	return doc, keys, nil
}

// token reads the next token; a syntax error is the manifest's, in the decoder's words.
func (w *manifestWalker) token() (json.Token, error) {
	tok, err := w.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New("unreadable manifest: unexpected end of JSON input")
		}
		return nil, fmt.Errorf("unreadable manifest: %v", err)
	}
	return tok, nil
}

// value builds the value that starts with tok, found at nesting depth.
func (w *manifestWalker) value(tok json.Token, depth int) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			obj, _, err := w.object(depth + 1)
			return obj, err
		}
		return w.list(depth + 1) // '[': the decoder never hands a closing one here
	case string:
		return t, checkText(t)
	case json.Number:
		// ParseFloat fails only with ErrRange here (the decoder checked the syntax); an
		// underflow (1e-400) is 0, as in Python.
		if f, err := strconv.ParseFloat(string(t), 64); err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("manifest holds a number out of range: %s", contract.Cut(string(t), numberCharsInError))
		}
		return t, nil
	}
	return tok, nil // bool or nil
}

// object reads an object whose '{' was just read, at nesting depth.
func (w *manifestWalker) object(depth int) (map[string]any, []string, error) {
	if depth > contract.ManifestMaxDepth {
		return nil, nil, fmt.Errorf("manifest nests deeper than %d levels", contract.ManifestMaxDepth)
	}
	obj := map[string]any{}
	var keys []string
	for {
		tok, err := w.token()
		if err != nil {
			return nil, nil, err
		}
		if tok == json.Delim('}') {
			return obj, keys, nil
		}
		key := tok.(string) // the decoder accepts nothing else in a key's place
		if err := checkText(key); err != nil {
			return nil, nil, err
		}
		if _, twice := obj[key]; twice {
			return nil, nil, fmt.Errorf("manifest has the key '%s' twice", contract.Cut(key, contract.NameCharsInError))
		}
		if tok, err = w.token(); err != nil {
			return nil, nil, err
		}
		v, err := w.value(tok, depth)
		if err != nil {
			return nil, nil, err
		}
		obj[key] = v
		keys = append(keys, key)
	}
}

// list reads a list whose '[' was just read, at nesting depth.
func (w *manifestWalker) list(depth int) ([]any, error) {
	if depth > contract.ManifestMaxDepth {
		return nil, fmt.Errorf("manifest nests deeper than %d levels", contract.ManifestMaxDepth)
	}
	items := []any{}
	for {
		tok, err := w.token()
		if err != nil {
			return nil, err
		}
		if tok == json.Delim(']') {
			return items, nil
		}
		v, err := w.value(tok, depth)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
	}
}

// checkText refuses U+FFFD: the input is valid UTF-8, so it is either written as such or
// the decoder's replacement for a lone-surrogate escape ("\ud800").
func checkText(s string) error {
	if strings.ContainsRune(s, utf8.RuneError) {
		return errors.New("manifest holds text that is not valid Unicode (a lone surrogate or U+FFFD)")
	}
	return nil
}

// quoteChar spells a character as encoding/json's syntax errors do.
func quoteChar(r rune) string {
	switch r {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	s := strconv.Quote(string(r))
	return "'" + s[1:len(s)-1] + "'"
}

// manifestKindOK: v is of the kind (proto/contract.toml [manifest.kinds]); doc is the whole
// manifest (drift is checked against its feature_names).
func manifestKindOK(kind string, v any, doc map[string]any) bool {
	switch kind {
	case contract.ManifestKindArtifact:
		s, ok := v.(string)
		return ok && artifactName.MatchString(s)
	case contract.ManifestKindFeatures:
		_, ok := featureList(v)
		return ok
	case contract.ManifestKindProbability:
		p, ok := number(v)
		return ok && p >= 0 && p <= 1
	case contract.ManifestKindSha256:
		s, ok := v.(string)
		return ok && sha256Hex.MatchString(s)
	case contract.ManifestKindText:
		s, ok := v.(string)
		return ok && utf8.RuneCountInString(s) <= contract.ManifestTextChars
	case contract.ManifestKindCalibration, contract.ManifestKindObject:
		_, ok := v.(map[string]any)
		return ok
	case contract.ManifestKindDrift:
		return driftOK(v, doc["feature_names"])
	}
	return false
}

// featureList is v as the names of a "features" field: 1..manifestMaxFeatures distinct
// names, each a valid feature name.
func featureList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok || len(list) < 1 || len(list) > contract.ManifestMaxFeatures {
		return nil, false
	}
	names := make([]string, len(list))
	seen := make(map[string]bool, len(list))
	for i, x := range list {
		s, isStr := x.(string)
		if !isStr || !featureName.MatchString(s) || seen[s] {
			return nil, false
		}
		seen[s] = true
		names[i] = s
	}
	return names, true
}

// number is v's value if it is a JSON number (never a bool); every number left after
// decodeManifest is finite.
func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

// driftOK: {} or exactly {features: {<each of feature_names>: bins}, prediction: bins}.
func driftOK(v any, featureNames any) bool {
	d, ok := v.(map[string]any)
	if !ok {
		return false
	}
	if len(d) == 0 {
		return true
	}
	feats, ok := d["features"].(map[string]any)
	if !ok || len(d) != 2 || !binsOK(d["prediction"]) {
		return false
	}
	names, ok := featureList(featureNames)
	if !ok || len(feats) != len(names) { // names are distinct: equal sizes and inclusion is set equality
		return false
	}
	for _, n := range names {
		if b, present := feats[n]; !present || !binsOK(b) {
			return false
		}
	}
	return true
}

// driftMinEdges: the fewest edges of a feature's bins (the contract's "0-32"). `make models`
// writes none for a feature with no value in the reference sample (drift/bins.py: shares are
// then [value bin, NaN bin]).
const driftMinEdges = 0

// binsOK: exactly {edges: driftMinEdges..manifestDriftMaxEdges strictly increasing
// numbers, shares: len(edges) + 2 numbers in [0, 1]}.
func binsOK(v any) bool {
	b, ok := v.(map[string]any)
	if !ok || len(b) != 2 {
		return false
	}
	edges, ok1 := b["edges"].([]any)
	shares, ok2 := b["shares"].([]any)
	if !ok1 || !ok2 || len(edges) < driftMinEdges || len(edges) > contract.ManifestDriftMaxEdges || len(shares) != len(edges)+2 {
		return false
	}
	prev := math.Inf(-1)
	for _, e := range edges {
		x, ok := number(e)
		if !ok || !(x > prev) {
			return false
		}
		prev = x
	}
	for _, s := range shares {
		x, ok := number(s)
		if !ok || x < 0 || x > 1 {
			return false
		}
	}
	return true
}

// manifestFromChecked fills a Manifest from a checked document, by exact key.
func manifestFromChecked(doc checkedManifest, raw []byte) (Manifest, error) {
	str := func(k string) string { s, _ := doc[k].(string); return s }
	names, _ := featureList(doc["feature_names"])
	threshold, _ := number(doc["decision_threshold"])
	m := Manifest{
		Name:              str("name"),
		Description:       str("description"),
		Created:           str("created"),
		FeatureNames:      names,
		DecisionThreshold: threshold,
		Library:           str("library"),
		LibrarySha256:     str("library_sha256"),
		TrainedOn:         str("trained_on"),
		Scope:             str("scope"),
		JSON:              string(raw), // as `make models` wrote it, byte for byte (as the Python server)
	}
	if cal, present := doc["calibration"]; present {
		// parseCalibration reads the checked object: json.Number keeps each number's text.
		text, err := json.Marshal(cal)
		if err != nil {
			return m, fmt.Errorf("unreadable manifest: %v", err)
		}
		m.CalibrationJSON = text
	}
	return m, nil
}
