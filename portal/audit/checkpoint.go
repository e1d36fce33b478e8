package audit

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// Checkpoint is a signed statement of the audit log's head at a time: the
// newest event and its chain value, and where the HMAC chain starts. Kept
// outside the database (a file an operator ships elsewhere, and the
// process log), it lets Verify detect the newest events being removed,
// which the chain alone cannot show.
type Checkpoint struct {
	Time  time.Time `json:"time"`
	Event int64     `json:"event"`
	Hash  string    `json:"hash"`
	// HMACFrom is the first HMAC-chained event, 0 if none was yet.
	HMACFrom int64 `json:"hmac_from"`
	// MAC is HMAC-SHA256 under the checkpoint key over the fields above.
	MAC string `json:"mac"`
}

// maxCheckpointLine bounds one line of a checkpoint file.
const maxCheckpointLine = 1024

// CheckpointInterval is how often a running portal writes a checkpoint
// when the log has grown.
const CheckpointInterval = time.Minute

func (l *Log) checkpointMAC(c Checkpoint) string {
	m := hmac.New(sha256.New, l.checkpointKey)
	// Fixed-width fields joined by newlines: no field can contain one.
	fmt.Fprintf(m, "%s\n%d\n%s\n%d\n%d", checkpointInfo, c.Time.UnixNano(), c.Hash, c.Event, c.HMACFrom)
	return hex.EncodeToString(m.Sum(nil))
}

// Checkpoint signs the log's current head.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	id, hash, err := l.store.AuditHead(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	from, err := l.hmacStart(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	c := Checkpoint{Time: l.now().UTC().Truncate(time.Microsecond), Event: id, Hash: hash, HMACFrom: from}
	c.MAC = l.checkpointMAC(c)
	return c, nil
}

// hmacStart finds the first HMAC-chained event once; it never moves.
func (l *Log) hmacStart(ctx context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hmacFrom != 0 {
		return l.hmacFrom, nil
	}
	from, err := l.store.FirstAuditWithHashPrefix(ctx, macPrefix)
	if err != nil {
		return 0, err
	}
	l.hmacFrom = from
	return from, nil
}

// WriteCheckpoint signs the head, appends it to the file at path (created
// 0600) as one JSON line, syncs it, and logs it.
func (l *Log) WriteCheckpoint(ctx context.Context, path string) (Checkpoint, error) {
	c, err := l.Checkpoint(ctx)
	if err != nil {
		return c, err
	}
	line, err := json.Marshal(c)
	if err != nil {
		return c, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return c, fmt.Errorf("open audit checkpoint file: %w", err)
	}
	_, werr := f.Write(append(line, '\n'))
	if werr == nil {
		werr = f.Sync()
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return c, fmt.Errorf("write audit checkpoint to %s: %w", path, werr)
	}
	l.logger.Info("audit checkpoint", "event", c.Event, "hash", c.Hash, "hmac_from", c.HMACFrom,
		"time", c.Time.Format(time.RFC3339Nano), "mac", c.MAC)
	return c, nil
}

// StartCheckpoints writes a checkpoint to path now, then every interval
// when the log has grown, and a last one when stop is called (at shutdown,
// before the database closes). stop waits for that last write. An error is
// returned only if the first checkpoint cannot be written; later failures
// are logged.
func (l *Log) StartCheckpoints(ctx context.Context, path string, interval time.Duration) (stop func(), err error) {
	last, err := l.WriteCheckpoint(ctx, path)
	if err != nil {
		return nil, err
	}
	write := func(ctx context.Context) {
		c, err := l.Checkpoint(ctx)
		if err != nil {
			l.logger.Error("audit checkpoint", "err", err)
			return
		}
		if c.Event == last.Event && c.Hash == last.Hash {
			return
		}
		if c, err = l.WriteCheckpoint(ctx, path); err != nil {
			l.logger.Error("audit checkpoint", "err", err)
			return
		}
		last = c
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				write(ctx)
			case <-ctx.Done():
				final, cancelFinal := context.WithTimeout(context.WithoutCancel(ctx), finalCheckpointTimeout)
				write(final)
				cancelFinal()
				return
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

// finalCheckpointTimeout bounds the checkpoint written at shutdown.
const finalCheckpointTimeout = 10 * time.Second

// ReadCheckpoints reads a checkpoint file and checks each line's MAC. A
// line that is not a checkpoint, or whose MAC does not verify, is an error
// naming the line: the file was changed, or written with another key.
func (l *Log) ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	var out []Checkpoint
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxCheckpointLine)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, fmt.Errorf("checkpoint line %d is not a checkpoint: %w", n, err)
		}
		if !hmac.Equal([]byte(l.checkpointMAC(c)), []byte(c.MAC)) {
			return nil, fmt.Errorf("checkpoint line %d does not verify: it was changed, or signed with another secrets key", n)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("checkpoint line %d is longer than %d bytes", n+1, maxCheckpointLine)
		}
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// String describes a checkpoint in one line for people.
func (c Checkpoint) String() string {
	return "event " + strconv.FormatInt(c.Event, 10) + " at " + c.Time.Format(time.RFC3339)
}
