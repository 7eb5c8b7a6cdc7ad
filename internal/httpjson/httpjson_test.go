package httpjson_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboard/switchboard/internal/httpjson"
	"github.com/switchboard/switchboard/proto"
)

func TestError(t *testing.T) {
	rec := httptest.NewRecorder()
	httpjson.Error(rec, http.StatusUnauthorized, proto.CodeUnauthorized, `bad "token"`)
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("answer %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	want := `{"error":{"code":"unauthorized","message":"bad \"token\""}}` + "\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}
