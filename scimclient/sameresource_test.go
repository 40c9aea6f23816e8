package scimclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAnswerAboutAnotherCaseOfTheIDIsWrongResource: ids compare exactly, as the state file
// keys them: an answer whose id differs from the one asked for only in case is about another
// resource (a target whose ids are case-sensitive may hold both).
func TestAnswerAboutAnotherCaseOfTheIDIsWrongResource(t *testing.T) {
	answerID := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/scim+json")
		_, _ = w.Write([]byte(`{"id":"` + answerID + `","userName":"alice"}`))
	}))
	t.Cleanup(srv.Close)
	c, _ := testClient(t, srv.URL+"/scim/v2")
	ctx := context.Background()
	answerID = "abc-1"
	if _, err := c.Get(ctx, Users, "abc-1"); err != nil {
		t.Fatalf("GET answered with the id asked for: %v", err)
	}
	answerID = "ABC-1"
	if _, err := c.Get(ctx, Users, "abc-1"); !errors.Is(err, ErrWrongResource) {
		t.Fatalf("GET abc-1 answered with ABC-1: %v", err)
	}
	if _, err := c.Patch(ctx, Users, "abc-1", []PatchOp{{Op: "replace", Path: "title", Value: "t"}}, ""); !errors.Is(err, ErrWrongResource) {
		t.Fatalf("PATCH abc-1 answered with ABC-1: %v", err)
	}
}
