package handlers

import (
	"context"

	"github.com/switchboard/switchboard/handlers-svc/dispatch"
	"github.com/switchboard/switchboard/handlers-svc/event"
	"github.com/switchboard/switchboard/handlers-svc/limit"
)

// Events of the posts family.
const (
	EventPostUpdated             = "postUpdated"               // client -> handler
	EventPostUpdatedNotification = "post_updated_notification" // to every mentioned user
)

// Bounds of postUpdated's args (docs/protocol.md section 5): one request
// fans out to at most MaxMentions users.
const (
	MaxPostLen  = 128 // bytes of the post id
	MaxMentions = 100 // users mentioned, repeats included
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
	d   event.Dispatcher
	lim *limit.Sender // nil: no limit
}

// NewPosts returns a Posts that dispatches through d.
func NewPosts(d event.Dispatcher) *Posts { return &Posts{d: d} }

// Limit bounds how many users one sender reaches with lim (nil: no bound)
// and returns p.
func (p *Posts) Limit(lim *limit.Sender) *Posts {
	p.lim = lim
	return p
}

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
	if in.Post == nil || *in.Post == "" || len(*in.Post) > MaxPostLen {
		return event.BadRequest("args.post must be a string of 1 to %d bytes", MaxPostLen)
	}
	if in.Mentions == nil {
		return event.BadRequest("args.mentions is required")
	}
	if len(in.Mentions) > MaxMentions {
		return event.BadRequest("args.mentions must name at most %d users, got %d", MaxMentions, len(in.Mentions))
	}
	users := make([]string, 0, len(in.Mentions))
	seen := make(map[string]struct{}, len(in.Mentions))
	for i, u := range in.Mentions {
		if !dispatch.ValidUser(u) {
			return event.BadRequest("args.mentions[%d] must be a user id of 1 to %d bytes of printable UTF-8", i, MaxUserLen)
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
	if err := p.lim.Recipients(ctx, r.User, len(users)); err != nil {
		return err
	}
	return p.d.ToUsers(ctx, users, EventPostUpdatedNotification, PostUpdatedNotification{
		Post:    *in.Post,
		Message: PostUpdatedMessage,
	})
}
