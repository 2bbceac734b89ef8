package apiclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	resp, err := c.send(ctx, http.MethodGet, &u, http.Header{"Accept": {"text/plain"}}, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return statusError(http.MethodGet, &u, resp, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read logs of revision %s/%s: %w", namespace, name, err)
	}
	return nil
}
