package objstore

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/keyway-dev/keyway/recordings/storage"
)

// Video exports (portal/exports) are kept beside the recordings, under
// PREFIX/exports/, named by their recording's SHA-256.
const (
	exportsDir = "exports/"
	videoExt   = ".mp4"
	// maxVideo is S3's limit on one PUT; a video export is far smaller
	// (recordings/video bounds it).
	maxVideo = 5 << 30
)

// videoKey is the key of the video name: 64 hex digits and ".mp4".
func (b *Bucket) videoKey(name string) (string, error) {
	sum, ok := strings.CutSuffix(name, videoExt)
	if !ok || len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return "", fmt.Errorf("objstore: invalid video name %q", name)
	}
	return b.prefix + exportsDir + name, nil
}

// PutVideo stores size bytes from r as the video name.
func (b *Bucket) PutVideo(ctx context.Context, name string, r io.Reader, size int64) error {
	k, err := b.videoKey(name)
	if err != nil {
		return err
	}
	if size < 0 || size > maxVideo {
		return fmt.Errorf("objstore: video %s of %d bytes: over %d", name, size, maxVideo)
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	_, err = b.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &b.bucket, Key: &k, Body: r, ContentLength: aws.Int64(size),
		ContentType: aws.String("video/mp4")})
	if err != nil {
		return fmt.Errorf("objstore: store %s: %w", k, err)
	}
	return nil
}

// OpenVideo opens the video name for reading (ranged GETs, within ctx)
// and returns its size; an error wrapping fs.ErrNotExist when there is
// none.
func (b *Bucket) OpenVideo(ctx context.Context, name string) (storage.File, int64, error) {
	k, err := b.videoKey(name)
	if err != nil {
		return nil, 0, err
	}
	hctx, cancel := context.WithTimeout(ctx, b.timeout)
	out, err := b.client.HeadObject(hctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &k})
	cancel()
	if isNotFound(err) {
		return nil, 0, fmt.Errorf("objstore: video %s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("objstore: video %s: %w", name, err)
	}
	size := aws.ToInt64(out.ContentLength)
	if size < 0 {
		return nil, 0, fmt.Errorf("objstore: video %s: size %d", name, size)
	}
	return &object{ctx: ctx, b: b, key: k, size: size, window: minWindow}, size, nil
}

// RemoveVideo deletes the video name; one not there is not an error.
func (b *Bucket) RemoveVideo(ctx context.Context, name string) error {
	k, err := b.videoKey(name)
	if err != nil {
		return err
	}
	return b.delete(ctx, k)
}
