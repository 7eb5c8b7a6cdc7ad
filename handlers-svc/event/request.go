package event

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Request is one event a client sent, as handlers-svc received it.
type Request struct {
	// Event is the event name; it matches proto.EventPattern.
	Event string
	// User is the verified user id of the socket that sent the event. It
	// comes from the client's token, never from anything the client sent.
	User string
	// Conn is the id of the connection the event arrived on; dispatch to it
	// with Dispatcher.ToConns to answer that device only.
	Conn string
	// Ref is the client's correlation id, or "" when it sent none. The
	// gateway uses it to ack; handlers rarely need it.
	Ref string
	// Args is the raw JSON of the event's args, or nil when absent or null.
	Args json.RawMessage

	result json.RawMessage // set by Respond
}

// Respond sets the result of the request: what the reply to the gateway
// carries, and the client's ack with it, as its "args" (docs/protocol.md
// sections 2 and 3). v is marshalled at once, as EncodeArgs does (but for
// its check of what a socket can carry: a result that is not UTF-8 is
// answered handler_error by the transport): nil, or a value that marshals
// to null, is no result (a plain ack), and a json.RawMessage is used as
// it is. A later call replaces the result;
// when the handler returns an error, no result is sent. A value that
// cannot be marshalled is a programming error and yields a plain
// (handler_error) error.
func (r *Request) Respond(v any) error {
	raw, err := encodeJSON(v)
	if err != nil {
		return err
	}
	if string(raw) == "null" {
		raw = nil
	}
	r.result = raw
	return nil
}

// Result returns the result set by Respond: JSON, or nil when there is
// none. Middleware reads it after the handler has returned, and the
// transport sends it.
func (r *Request) Result() json.RawMessage { return r.result }

// Decode decodes r.Args into v, which must be a non-nil pointer. Absent or
// null args leave v unchanged, so a struct target reads them as {}; checking
// required fields is the handler's job. Unknown fields are ignored, so clients
// may send fields a newer handler will read.
//
// A value of the wrong type is reported as a bad_request *Error whose
// message names the field for a person, as in "args.to must be a string",
// "args.items[2].id must be an integer" or "args must be an object"; the
// decoder's own text is never returned. A type
// whose UnmarshalJSON returns an *Error has it returned as is; any other error
// from UnmarshalJSON names the field without the error's text, as in
// "args.id is invalid", or, for a time.Time, "args.at must be a time in RFC
// 3339 format" ("args is invalid" when no one field of a struct fails). A v
// that is not a non-nil pointer is a programming error and yields a plain
// (handler_error) error.
func (r *Request) Decode(v any) error {
	if len(r.Args) == 0 {
		return nil
	}
	err := json.Unmarshal(r.Args, v)
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if e, ok := errors.AsType[*json.InvalidUnmarshalError](err); ok {
		return e
	}
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return typeError(reflect.TypeOf(v), r.Args, e)
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return BadRequest("args is not valid JSON")
	}
	// An UnmarshalJSON or UnmarshalText of a field failed (a time.Time
	// not in RFC 3339, say): the decoder does not say which, so find the
	// field that fails alone, and name it without the error's text.
	if name, t := invalidField(reflect.TypeOf(v), r.Args); name != "" {
		if deref(t) == timeType {
			return BadRequest("%s must be %s", name, describe(t))
		}
		return BadRequest("%s is invalid", name)
	}
	return BadRequest("args is invalid")
}

var (
	timeType            = reflect.TypeFor[time.Time]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// invalidField returns the name ("args.at") and type of the first field of
// the struct target whose value in args does not decode alone, or "" when
// target is no struct, args no object or no single field fails.
func invalidField(target reflect.Type, args json.RawMessage) (string, reflect.Type) {
	t := deref(target)
	if t.Kind() != reflect.Struct {
		return "", nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(args, &fields) != nil {
		return "", nil
	}
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		f, ok := fieldByJSONName(t, key)
		if !ok || f.Anonymous {
			continue
		}
		if json.Unmarshal(fields[key], reflect.New(f.Type).Interface()) != nil {
			return "args." + key, f.Type
		}
	}
	return "", nil
}

// typeError makes the message for a value of the wrong type: it walks the
// target type along the JSON field path the decoder reported, so it can say
// what the field must be ("an array of strings") rather than what one element
// was, and along args, so it can say which element of an array or object on
// the way holds it ("args.items[2].id").
func typeError(target reflect.Type, args json.RawMessage, e *json.UnmarshalTypeError) *Error {
	var path []string
	if e.Field != "" {
		path = strings.Split(e.Field, ".")
	}
	name, t := walk(target, args, path)
	if t == nil {
		// The path could not be followed; fall back to what the decoder
		// expected at the failing value.
		name, t = "args", e.Type
		if e.Field != "" {
			name = "args." + e.Field
		}
	}
	return BadRequest("%s must be %s", name, describe(t))
}

// walk follows path (JSON field names, with embedded struct type names
// interleaved, as encoding/json reports them) from t, and the JSON value
// raw along with it. It returns the field path for people ("args.a.b",
// with the index or key of the element that fails to decode in each array
// or object it passes through: "args.items[2].id") and the declared type
// of its last field, or a nil type when the path does not fit t. Each
// step into raw reads all of it below, so raw is followed for
// maxRawSteps steps at most: a client's args as deep as encoding/json
// takes, into a type that holds itself, would cost a step per level (24
// KB 3,000 deep took seconds); below that, the path names the fields only.
func walk(t reflect.Type, raw json.RawMessage, path []string) (string, reflect.Type) {
	name := "args"
	t = deref(t)
	steps := 0
	// step reports whether raw may be followed one more step.
	step := func() bool {
		steps++
		return steps <= maxRawSteps
	}
	for len(path) > 0 {
		for depth := 0; isContainer(t); depth++ {
			if depth == maxNesting {
				return "", nil // a type that holds itself (type T []T): no struct below
			}
			if raw != nil && !step() {
				raw = nil
			}
			var at string
			at, raw = failingElement(t, raw)
			name += at
			t = deref(t.Elem())
		}
		if t.Kind() != reflect.Struct {
			return "", nil
		}
		f, ok := fieldByJSONName(t, path[0])
		if !ok {
			return "", nil
		}
		if !(f.Anonymous && f.Tag.Get("json") == "") {
			name += "." + path[0]
			if raw != nil && !step() {
				raw = nil
			}
			raw = member(raw, path[0], f.Type)
		} // an embedded struct's fields are in raw itself
		t = deref(f.Type)
		path = path[1:]
	}
	return name, t
}

// maxNesting bounds the arrays and objects of arrays and objects walk
// passes through between two fields, for a type that contains itself.
const maxNesting = 64

// isContainer reports whether t is a slice, array or map, whose elements
// the decoder descends into without naming them in the path ([]byte is a
// string to it).
func isContainer(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Slice:
		return t.Elem().Kind() != reflect.Uint8
	case reflect.Array, reflect.Map:
		return true
	}
	return false
}

// failingElement returns the first element of the JSON array or object
// raw that does not decode into container t's element type, with its
// place for people ("[2]", or "[\"key\"]" in an object), or "" and nil
// when raw is not such a value or none fails (a map's key was wrong).
// An object's members are tried in the order of the text, as
// encoding/json decodes them and reports the first that fails.
func failingElement(t reflect.Type, raw json.RawMessage) (string, json.RawMessage) {
	if raw == nil {
		return "", nil
	}
	if t.Kind() == reflect.Map {
		members, _ := objectMembers(raw)
		for _, m := range members {
			if fails(t.Elem(), m.value) {
				k := m.key
				if len(k) > maxKeyShown { // the client's text: kept short
					k = strings.ToValidUTF8(k[:maxKeyShown], "") + "…"
				}
				return "[" + strconv.Quote(k) + "]", m.value
			}
		}
		return "", nil
	}
	var elems []json.RawMessage
	if json.Unmarshal(raw, &elems) != nil {
		return "", nil
	}
	for i, v := range elems {
		if fails(t.Elem(), v) {
			return "[" + strconv.Itoa(i) + "]", v
		}
	}
	return "", nil
}

// fails reports whether the JSON value v does not decode into a t.
func fails(t reflect.Type, v json.RawMessage) bool {
	return json.Unmarshal(v, reflect.New(t).Interface()) != nil
}

// maxRawSteps is the most steps walk takes into args (into a member or an
// element); 32 name the elements of 16 arrays of structs.
const maxRawSteps = 32

// maxKeyShown is the most bytes of an object's key an error names.
const maxKeyShown = 32

// member returns the value of the JSON object raw that encoding/json
// decodes into a field named key of type t, or nil. encoding/json decodes
// every member whose key is key in any case into the field, in the order
// of the text, and reports the first that fails: so it is the first of
// them that does not decode into t, or else the last of them.
func member(raw json.RawMessage, key string, t reflect.Type) json.RawMessage {
	members, _ := objectMembers(raw)
	var matched []json.RawMessage
	for _, m := range members {
		if strings.EqualFold(m.key, key) {
			matched = append(matched, m.value)
		}
	}
	if len(matched) > 1 { // the same field given twice: which one failed
		for _, v := range matched[:len(matched)-1] {
			if fails(t, v) {
				return v
			}
		}
	}
	if len(matched) == 0 {
		return nil
	}
	return matched[len(matched)-1]
}

// jsonMember is one member of a JSON object.
type jsonMember struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the members of the JSON object raw in the order
// of the text (a key given twice, twice), or false when raw is not an
// object.
func objectMembers(raw json.RawMessage) ([]jsonMember, bool) {
	if raw == nil {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var members []jsonMember
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			return nil, false
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return nil, false
		}
		members = append(members, jsonMember{key, v})
	}
	return members, true
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// fieldByJSONName finds the field of struct t that encoding/json decodes key
// into: by its JSON name, exactly or case-insensitively, or an embedded
// struct by its type name, as the decoder names it in error paths.
func fieldByJSONName(t reflect.Type, key string) (reflect.StructField, bool) {
	var folded reflect.StructField
	found := false
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		jsonName, _, _ := strings.Cut(tag, ",")
		if jsonName == "" {
			jsonName = f.Name
		}
		if f.Anonymous && tag == "" && f.Name == key {
			return f, true
		}
		if !f.IsExported() {
			continue
		}
		if jsonName == key {
			return f, true
		}
		if !found && strings.EqualFold(jsonName, key) {
			folded, found = f, true
		}
	}
	return folded, found
}

// describe says, for a person, what JSON value t accepts: "a string",
// "an array of strings", "an object whose values are integers".
func describe(t reflect.Type) string {
	t = deref(t)
	if t == timeType {
		return "a time in RFC 3339 format"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array of " + plural(t.Elem())
	case reflect.Map:
		// encoding/json reports a key of the wrong type as it reports a
		// value, with the map's field: so the keys are named too when
		// they can be wrong, and the message fits either.
		var whose []string
		if k := t.Key(); k.Kind() != reflect.String && !reflect.PointerTo(k).Implements(textUnmarshalerType) {
			whose = append(whose, "whose keys are "+plural(k))
		}
		if deref(t.Elem()).Kind() != reflect.Interface {
			whose = append(whose, "whose values are "+plural(t.Elem()))
		}
		return strings.TrimSpace("an object " + strings.Join(whose, " and "))
	}
	return singular(t)
}

func singular(t reflect.Type) string { one, _ := kindName(t); return one }

func plural(t reflect.Type) string { _, many := kindName(t); return many }

// kindName names the JSON kind a Go type decodes from, for one value and
// for several.
func kindName(t reflect.Type) (one, many string) {
	switch t = deref(t); t.Kind() {
	case reflect.Int8, reflect.Int16, reflect.Int32:
		// Narrower than JSON's integers: say the range, so that a value
		// out of it is not told it must be what it already is.
		lo, hi := -1<<(t.Bits()-1), 1<<(t.Bits()-1)-1
		return fmt.Sprintf("an integer from %d to %d", lo, hi), fmt.Sprintf("integers from %d to %d", lo, hi)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		hi := uint64(1)<<t.Bits() - 1
		return fmt.Sprintf("an integer from 0 to %d", hi), fmt.Sprintf("integers from 0 to %d", hi)
	case reflect.String:
		return "a string", "strings"
	case reflect.Bool:
		return "a boolean", "booleans"
	case reflect.Int, reflect.Int64:
		return "an integer", "integers"
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return "a non-negative integer", "non-negative integers"
	case reflect.Float32, reflect.Float64:
		return "a number", "numbers"
	case reflect.Struct, reflect.Map:
		return "an object", "objects"
	case reflect.Slice, reflect.Array:
		return "an array", "arrays"
	default:
		return "a valid value", "valid values"
	}
}
