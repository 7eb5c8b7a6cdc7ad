// Package httpjson writes the JSON answers of switchboard's HTTP endpoints:
// a value, or the contract's error body {"error":{"code","message"}}
// (docs/protocol.md section 2), one shape in both services.
package httpjson

import (
	"encoding/json"
	"net/http"

	"github.com/switchboard/switchboard/proto"
)

// Write answers with v as JSON and the given status.
func Write(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

// Error answers with the error body of code and msg and the given status.
func Error(rw http.ResponseWriter, status int, code proto.Code, msg string) {
	Write(rw, status, ErrorBody{Error: proto.Error{Code: code, Message: msg}})
}

// ErrorBody is the JSON body of a refused HTTP request.
type ErrorBody struct {
	Error proto.Error `json:"error"`
}
