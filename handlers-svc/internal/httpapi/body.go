package httpapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"

	"github.com/switchboard/switchboard/handlers-svc/event"
)

// decodeBody reads a T (a struct) from a request's body, its keys matched
// exactly: a key that is not one of T's JSON names, in the same letter
// case, is an unknown field and ignored, where encoding/json would take
// "EVENT" or "Broadcast" for event or broadcast (docs/protocol.md section
// 7; an envelope's keys match the same way, section 2). A caller, or a
// policy in front of the API, that reads "event":"e" and no "broadcast"
// then sees switchboard do just that. Its errors are bad_request, naming
// the field as "body.users must be an array of strings".
func decodeBody[T any](body []byte) (T, error) {
	var v T
	if len(body) == 0 {
		return v, event.BadRequest("body must be a JSON object")
	}
	// Request.Decode names the field for a person; here it is the body's.
	r := event.Request{Args: onlyKnownKeys(body, jsonNames[T]())}
	if err := r.Decode(&v); err != nil {
		if e, ok := errors.AsType[*event.Error](err); ok {
			return v, event.BadRequest("%s", "body"+strings.TrimPrefix(e.Message, "args"))
		}
		return v, err
	}
	return v, nil
}

// onlyKnownKeys returns body without the top-level keys that are not in
// names, exactly; body itself when it has none, or is no JSON object (the
// decoder then says what is wrong with it).
func onlyKnownKeys(body []byte, names map[string]bool) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil || obj == nil {
		return body
	}
	unknown := false
	for k := range obj {
		if !names[k] {
			delete(obj, k)
			unknown = true
		}
	}
	if !unknown {
		return body
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return out
}

var jsonNamesOf sync.Map // reflect.Type -> map[string]bool

// jsonNames returns the JSON names of the fields of the struct T, as
// their tags give them.
func jsonNames[T any]() map[string]bool {
	t := reflect.TypeFor[T]()
	if names, ok := jsonNamesOf.Load(t); ok {
		return names.(map[string]bool)
	}
	names := make(map[string]bool, t.NumField())
	for f := range t.Fields() {
		if f.Anonymous {
			// encoding/json promotes an embedded struct's fields; this
			// does not, so no body type may embed one.
			panic("httpapi: " + t.String() + " embeds " + f.Name)
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = true
	}
	jsonNamesOf.Store(t, names)
	return names
}
