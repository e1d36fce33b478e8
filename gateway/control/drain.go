package control

import (
	"context"
	"time"

	"github.com/keyway-dev/keyway/gateway/spool"
)

// uploadPoll is how often the spool is looked at while recordings wait
// for upload: the uploader announces no progress.
const uploadPoll = 100 * time.Millisecond

// WaitUploaded waits until the spool holds no recording waiting for
// upload (the uploader of StartUploads still running), or ctx ends; it
// returns how many still wait.
func WaitUploaded(ctx context.Context, sp *spool.Spool) (int, error) {
	tick := time.NewTicker(uploadPoll)
	defer tick.Stop()
	for {
		n, _, err := sp.Pending()
		if err != nil || n == 0 {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, nil
		case <-tick.C:
		}
	}
}
