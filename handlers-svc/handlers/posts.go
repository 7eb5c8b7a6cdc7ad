package handlers

import (
	"context"

	"github.com/switchboard/switchboard/handlers-svc/event"
)

// Events of the posts family.
const (
	EventPostUpdated             = "postUpdated"               // client -> handler
	EventPostUpdatedNotification = "post_updated_notification" // to every mentioned user
)

// PostUpdatedMessage is the text of every post_updated_notification.
const PostUpdatedMessage = "A post you have been mentioned in has been updated"

// PostUpdatedNotification is the args of a post_updated_notification.
type PostUpdatedNotification struct {
	Post    string `json:"post"`
	Message string `json:"message"`
}

// Posts serves the posts events.
type Posts struct {
	d event.Dispatcher
}

// NewPosts returns a Posts that dispatches through d.
func NewPosts(d event.Dispatcher) *Posts { return &Posts{d: d} }

// PostUpdated serves postUpdated: {"post":"<id>","mentions":["<user id>",...]}.
// It dispatches one post_updated_notification to every device of each
// mentioned user; a user mentioned twice is notified once, and an empty
// mentions list dispatches nothing.
func (p *Posts) PostUpdated(ctx context.Context, r *event.Request) error {
	var in struct {
		Post     *string  `json:"post"`
		Mentions []string `json:"mentions"`
	}
	if err := r.Decode(&in); err != nil {
		return err
	}
	if in.Post == nil || *in.Post == "" {
		return event.BadRequest("args.post must be a non-empty string")
	}
	if in.Mentions == nil {
		return event.BadRequest("args.mentions is required")
	}
	users := make([]string, 0, len(in.Mentions))
	seen := make(map[string]struct{}, len(in.Mentions))
	for i, u := range in.Mentions {
		if u == "" {
			return event.BadRequest("args.mentions[%d] must be a non-empty string", i)
		}
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil
	}
	return p.d.ToUsers(ctx, users, EventPostUpdatedNotification, PostUpdatedNotification{
		Post:    *in.Post,
		Message: PostUpdatedMessage,
	})
}
