package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/cmd/sluice/internal/api"
)

// Logs copies the instance logs of revision namespace/name to w as the server sends them: the
// last tail lines of each instance (all when tail < 0), then, with follow, new lines until ctx
// is done or the server ends the stream.
func (c *Client) Logs(ctx context.Context, namespace, name string, follow bool, tail int, w io.Writer) error {
	u := *c.base
	u.Path += objectPath("revisions", namespace, name) + "/logs"
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	if tail >= 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u.String(), err)
	}
	req.Header.Set("Accept", "text/plain")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &UnreachableError{Server: c.base.String(), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return &api.StatusError{Code: resp.StatusCode, Message: fmt.Sprintf("GET %s: %s: %s", u.String(), resp.Status, strings.TrimSpace(string(data)))}
		}
		return &api.StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read logs of revision %s/%s: %w", namespace, name, err)
	}
	return nil
}
