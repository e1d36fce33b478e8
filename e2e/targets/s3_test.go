package targets

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestS3ServesTheBucket starts the harness S3 server, stores and reads
// an object with its credentials, is refused with a wrong secret, and
// stops: its process is gone and its port closed.
func TestS3ServesTheBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := StartS3(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	key := "dir/hello.txt"
	if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &s.Bucket, Key: &key, Body: strings.NewReader("hello")}); err != nil {
		t.Fatal(err)
	}
	out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: &key, Range: aws.String("bytes=1-3")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, []byte("ell")) {
		t.Fatalf("range read %q", got)
	}
	if keys, err := s.Keys(ctx, "dir/"); err != nil || len(keys) != 1 || keys[0] != key {
		t.Fatalf("keys %v, %v", keys, err)
	}
	wrong := *s
	wrong.SecretKey = "not-the-secret"
	if _, err := wrong.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: &key}); err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("a wrong secret: %v", err)
	}
	addr := strings.TrimPrefix(s.Endpoint, "http://")
	s.Stop()
	select {
	case <-s.done:
	default:
		t.Fatal("the server still runs after Stop")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections", addr)
	}
}
