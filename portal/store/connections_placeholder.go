package store

// PLACEHOLDER until the connlog branch merges (deleted then).

import (
	"context"
	"time"
)

type Connection struct {
	ID                                                     int64
	SessionID                                              string
	Start                                                  time.Time
	User, ClientAddr, Resource, Protocol, Gateway, Segment string
	Result, Reason, Message                                string
	Posture                                                []string
	End                                                    time.Time
	BytesIn, BytesOut                                      int64
}

func (s *Store) AddConnection(ctx context.Context, c Connection) (int64, error) { return 0, nil }
func (s *Store) FinishConnection(ctx context.Context, id int64, end time.Time, bytesIn, bytesOut int64) error {
	return nil
}
