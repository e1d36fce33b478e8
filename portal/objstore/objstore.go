// Package objstore keeps the portal's recordings in S3-compatible object
// storage (AWS S3, MinIO, Ceph, SeaweedFS, versitygw...), behind the same
// calls as the recordings directory (recordings/storage.Store).
//
// Layout under the bucket's prefix, as in the directory:
//
//	incoming/SESSION.part   an upload in progress: its last bytes (less than
//	                        a part), with the multipart upload's id, the
//	                        parts before them and their SHA-256 state in
//	                        its metadata
//	incoming/SESSION.idx    its key-frame index (desktop recordings)
//	YYYY/MM/DD/SESSION.cast a stored terminal recording
//	YYYY/MM/DD/SESSION.guac a stored desktop recording, with
//	YYYY/MM/DD/SESSION.idx  its key-frame index
//
// A gateway's upload arrives in pieces that may stop anywhere. Each piece
// is cut into parts of a multipart upload to the recording's final key,
// one part in memory at a time; what is left at the end of a piece (less
// than a part: S3 refuses small parts but the last) is put in the .part
// object, whose one PUT also records how many parts came before it and
// the running SHA-256 over them. So the whole state of an unfinished
// upload lives in the bucket, any portal process can take the next piece,
// and Commit checks the SHA-256 without reading the recording back.
package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/keyway-dev/keyway/recordings/guacrec"
	"github.com/keyway-dev/keyway/recordings/storage"
)

// Limits on what an upload and the server may make the portal hold.
const (
	// DefaultPartSize is the size of the multipart upload's parts: one is
	// held in memory per upload in progress. S3 refuses parts under 5 MiB
	// but the last; 8 MiB keeps a 4 GiB recording under 10,000 parts.
	DefaultPartSize = 8 << 20
	minPartSize     = 5 << 20
	// maxParts is S3's limit on one multipart upload's parts.
	maxParts = 10000
	// maxPartSize bounds the part size an upload state may announce: the
	// tail read back is at most a part.
	maxPartSize = 64 << 20
	// DefaultTimeout bounds each request to the S3 server but the ranged reads
	// of a recording (bounded by the request reading it): a part on a slow
	// link, the completion of a large upload. A server that hangs does not
	// hold an upload, and its lock, for ever.
	DefaultTimeout = 5 * time.Minute
	// maxListPage bounds the parts one ListParts answer may carry.
	maxListPage = 1000
)

// Config says which bucket and how to reach it. Credentials come from the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, shared files,
// instance or pod roles: the AWS SDK's default chain).
type Config struct {
	// Bucket and Prefix (may be empty; no leading or trailing '/') name
	// where recordings go.
	Bucket, Prefix string
	// Endpoint is the server's URL (https://minio.example:9000); empty is
	// AWS.
	Endpoint string
	// Region signs requests; empty is the environment's (AWS_REGION) or
	// us-east-1.
	Region string
	// PathStyle puts the bucket in the URL's path, not its host name, as
	// most self-hosted servers need.
	PathStyle bool
	// ClientTLS, if set, adjusts the TLS settings of the connections to
	// the server (the portal's minimum version and cipher suites).
	ClientTLS func(*tls.Config) *tls.Config
	// HTTPClient, if set, makes the requests instead of the SDK's client
	// (tests count bytes with it); ClientTLS and AWS_CA_BUNDLE then do not
	// apply.
	HTTPClient *http.Client
	// Credentials, if set, replace the environment's (tests).
	Credentials aws.CredentialsProvider
	// Timeout bounds each request but the reads of a recording; 0 is
	// DefaultTimeout.
	Timeout time.Duration
	// PartSize is the multipart part size; 0 is DefaultPartSize.
	PartSize int64
	Logger   *slog.Logger
}

// ParseURL reads s3://bucket/prefix into a bucket and a prefix.
func ParseURL(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("recordings location %q: want s3://BUCKET or s3://BUCKET/PREFIX", s)
	}
	prefix = strings.Trim(u.Path, "/")
	if strings.Contains(prefix, "//") || strings.Contains("/"+prefix+"/", "/../") || strings.Contains("/"+prefix+"/", "/./") {
		return "", "", fmt.Errorf("recordings location %q: the prefix has empty, . or .. segments", s)
	}
	return u.Host, prefix, nil
}

// Bucket is a recordings store in an S3 bucket.
type Bucket struct {
	storage.Locks
	client   *s3.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64
	timeout  time.Duration
	log      *slog.Logger
}

var _ storage.Store = (*Bucket)(nil)

// New returns the store cfg names. It makes no request: Writable checks
// the bucket.
func New(ctx context.Context, cfg Config) (*Bucket, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("objstore: no bucket")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PartSize < minPartSize || cfg.PartSize > maxPartSize {
		return nil, fmt.Errorf("objstore: part size %d outside %d..%d", cfg.PartSize, minPartSize, maxPartSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opts := []func(*config.LoadOptions) error{}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.ClientTLS != nil {
		// The SDK's own client, so that AWS_CA_BUNDLE still adds its roots.
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			tr.TLSClientConfig = cfg.ClientTLS(tr.TLSClientConfig)
		})))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("objstore: load the S3 settings and credentials: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.HTTPClient != nil {
			o.HTTPClient = cfg.HTTPClient
		}
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// Checksums only where S3 requires them: many S3-compatible
		// servers refuse the SDK's newer default ones. Uploads are checked
		// with SHA-256 here anyway.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	p := strings.Trim(cfg.Prefix, "/")
	if p != "" {
		p += "/"
	}
	return &Bucket{client: client, bucket: cfg.Bucket, prefix: p, partSize: cfg.PartSize, timeout: cfg.Timeout, log: cfg.Logger}, nil
}

// String names the store for logs: s3://bucket/prefix.
func (b *Bucket) String() string { return "s3://" + b.bucket + "/" + strings.TrimSuffix(b.prefix, "/") }

func (b *Bucket) partKey(key string) string {
	return b.prefix + storage.Incoming + "/" + key + ".part"
}

func (b *Bucket) partIndexKey(key string) string {
	return b.prefix + storage.Incoming + "/" + key + storage.IndexExt
}

// objectKey is the key of the recording at rel.
func (b *Bucket) objectKey(rel string) (string, error) {
	if err := storage.CheckPath(rel); err != nil {
		return "", err
	}
	return b.prefix + path.Clean(filepath.ToSlash(rel)), nil
}

// Metadata of the .part object.
const (
	metaUpload   = "upload-id"
	metaParts    = "parts"
	metaPartSize = "part-size"
	metaSHA      = "sha256-state"
	metaTarget   = "target"
)

// upload is the state of an unfinished upload, as the .part object holds
// it.
type upload struct {
	id       string // the multipart upload's
	target   string // the recording's key
	parts    int64  // whole parts uploaded before tail
	partSize int64
	sha      hash.Hash // over the parts
	tail     []byte    // at most a part
}

func (u *upload) held() int64 { return u.parts*u.partSize + int64(len(u.tail)) }

// load reads key's upload state; nil for none.
func (b *Bucket) load(ctx context.Context, key string) (*upload, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: aws.String(b.partKey(key))})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: read the upload of %s: %w", key, err)
	}
	defer out.Body.Close()
	u := &upload{id: out.Metadata[metaUpload], sha: sha256.New()}
	bad := func(what string) error {
		return fmt.Errorf("%w: session %s (%s)", errDamaged, key, what)
	}
	var perr error
	if u.parts, perr = strconv.ParseInt(out.Metadata[metaParts], 10, 64); perr != nil || u.parts < 0 || u.parts >= maxParts {
		return nil, bad("parts")
	}
	if u.partSize, perr = strconv.ParseInt(out.Metadata[metaPartSize], 10, 64); perr != nil || u.partSize < minPartSize || u.partSize > maxPartSize {
		return nil, bad("part size")
	}
	if t, err := base64.RawURLEncoding.DecodeString(out.Metadata[metaTarget]); err == nil {
		u.target = string(t)
	}
	st, err := base64.StdEncoding.DecodeString(out.Metadata[metaSHA])
	if err != nil || u.sha.(encoding.BinaryUnmarshaler).UnmarshalBinary(st) != nil {
		return nil, bad("checksum state")
	}
	if u.target == "" || (u.parts > 0 && u.id == "") {
		return nil, bad("upload id")
	}
	// The tail is at most a part (a whole one when its upload failed):
	// bound it before reading.
	if out.ContentLength != nil && *out.ContentLength > u.partSize {
		return nil, bad("tail size")
	}
	u.tail, err = io.ReadAll(io.LimitReader(out.Body, u.partSize+1))
	if err != nil {
		return nil, fmt.Errorf("objstore: read the upload of %s: %w", key, err)
	}
	if int64(len(u.tail)) > u.partSize {
		return nil, bad("tail size")
	}
	return u, nil
}

// errDamaged means an upload's state object cannot be read back as one
// the portal wrote; the upload is discarded and sent again.
var errDamaged = errors.New("objstore: damaged upload state")

// loadOrReset is load, discarding a damaged state (the gateway then
// uploads from the start) rather than refusing the recording for ever.
func (b *Bucket) loadOrReset(ctx context.Context, key string) (*upload, error) {
	u, err := b.load(ctx, key)
	if errors.Is(err, errDamaged) {
		b.log.Warn("recording upload state damaged: discarded; the gateway sends the recording again", "session", key, "err", err)
		return nil, b.Discard(ctx, key)
	}
	return u, err
}

// save replaces key's upload state with u: one PUT, so a state is either
// the old or the new one.
func (b *Bucket) save(ctx context.Context, key string, u *upload) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	st, err := u.sha.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("objstore: %w", err)
	}
	_, err = b.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &b.bucket, Key: aws.String(b.partKey(key)),
		Body: bytes.NewReader(u.tail), ContentLength: aws.Int64(int64(len(u.tail))),
		Metadata: map[string]string{
			metaUpload: u.id, metaParts: strconv.FormatInt(u.parts, 10), metaPartSize: strconv.FormatInt(u.partSize, 10),
			metaSHA: base64.StdEncoding.EncodeToString(st), metaTarget: base64.RawURLEncoding.EncodeToString([]byte(u.target)),
		}})
	if err != nil {
		return fmt.Errorf("objstore: save the upload of %s: %w", key, err)
	}
	return nil
}

// PartSize returns how many bytes of an interrupted upload of key are
// held, 0 for none.
func (b *Bucket) PartSize(ctx context.Context, key string) (int64, error) {
	if !storage.ValidKey(key) {
		return 0, fmt.Errorf("storage: invalid recording key %q", key)
	}
	u, err := b.loadOrReset(ctx, key)
	if err != nil || u == nil {
		return 0, err
	}
	return u.held(), nil
}

// Append adds r to key's upload from offset on (at most the bytes held;
// bytes held already are skipped: the SHA-256 check at Commit finds a
// resent piece that differs), at most limit bytes in all, and returns the
// bytes held afterwards. The caller holds key's Lock.
func (b *Bucket) Append(ctx context.Context, key, rel string, offset int64, r io.Reader, limit int64) (int64, error) {
	if !storage.ValidKey(key) {
		return 0, fmt.Errorf("storage: invalid recording key %q", key)
	}
	target, err := b.objectKey(rel)
	if err != nil {
		return 0, err
	}
	u, err := b.loadOrReset(ctx, key)
	if err != nil {
		return 0, err
	}
	if u != nil && u.target != target {
		// Pieces of one recording all go to one key; start again.
		if err := b.Discard(ctx, key); err != nil {
			return 0, err
		}
		u = nil
	}
	if u == nil {
		u = &upload{target: target, partSize: b.partSize, sha: sha256.New()}
	}
	have := u.held()
	if offset < 0 || offset > have {
		return have, fmt.Errorf("%w: upload from byte %d, %d held", storage.ErrOffset, offset, have)
	}
	if limit/u.partSize >= maxParts {
		return have, fmt.Errorf("%w: a limit of %d bytes needs more than %d parts", storage.ErrSize, limit, maxParts)
	}
	if _, err := io.CopyN(io.Discard, r, have-offset); err != nil {
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return have, err
	}
	var rerr error
	saved := have // what the state in the bucket holds
	in := io.LimitReader(r, max(0, limit-have+1))
	buf := append(make([]byte, 0, max(minBuffer, len(u.tail))), u.tail...)
	for {
		var err error
		buf, err = fill(buf, in, int(u.partSize))
		u.tail = buf
		if len(buf) < int(u.partSize) {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			break
		}
		// A whole part: upload it, then record it (a crash between the two
		// only loses the part, which is sent again).
		if u.id == "" {
			cctx, cancel := context.WithTimeout(ctx, b.timeout)
			out, err := b.client.CreateMultipartUpload(cctx, &s3.CreateMultipartUploadInput{Bucket: &b.bucket, Key: &target})
			cancel()
			if err != nil {
				rerr = fmt.Errorf("objstore: start the upload of %s: %w", key, err)
				break
			}
			u.id = aws.ToString(out.UploadId)
		}
		if _, err := b.uploadPart(ctx, u, int32(u.parts+1), buf); err != nil {
			rerr = err // the part is kept as the tail, at most a part
			break
		}
		u.sha.Write(buf)
		u.parts++
		u.tail = nil
		buf = buf[:0]
		if err := b.save(ctx, key, u); err != nil {
			// The part is uploaded, the state says it is not: the next
			// piece sends it again, over the same part number.
			return saved, err
		}
		saved = u.held()
	}
	size := u.held()
	if err := b.save(ctx, key, u); err != nil {
		return saved, errors.Join(rerr, err)
	}
	if rerr == nil && size > limit {
		rerr = fmt.Errorf("%w: over the limit of %d bytes", storage.ErrSize, limit)
	}
	return size, rerr
}

// minBuffer is the buffer an upload starts with: it grows to a part only
// as bytes arrive, so a slow gateway's upload holds little memory.
const minBuffer = 64 << 10

// fill reads from r into buf until it holds max bytes or r fails (io.EOF
// at its end), growing buf by doubling up to max.
func fill(buf []byte, r io.Reader, max int) ([]byte, error) {
	for len(buf) < max {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(max, 2*cap(buf)+minBuffer))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), max)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// uploadPart uploads p as part n of u's upload and returns its ETag.
func (b *Bucket) uploadPart(ctx context.Context, u *upload, n int32, p []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	out, err := b.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: &b.bucket, Key: &u.target, UploadId: &u.id,
		PartNumber: aws.Int32(n), Body: bytes.NewReader(p), ContentLength: aws.Int64(int64(len(p)))})
	if err != nil {
		return "", fmt.Errorf("objstore: upload part %d of %s: %w", n, u.target, err)
	}
	return aws.ToString(out.ETag), nil
}

// Discard removes key's upload: its parts, state and index.
func (b *Bucket) Discard(ctx context.Context, key string) error {
	if !storage.ValidKey(key) {
		return fmt.Errorf("storage: invalid recording key %q", key)
	}
	u, lerr := b.load(ctx, key)
	var errs []error
	if u != nil && u.id != "" {
		actx, cancel := context.WithTimeout(ctx, b.timeout)
		_, err := b.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &b.bucket, Key: &u.target, UploadId: &u.id})
		cancel()
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("objstore: abort the upload of %s: %w", key, err))
		}
	}
	if lerr != nil && u == nil {
		// A damaged state is removed all the same.
		b.log.Warn("discarding an unreadable upload state", "session", key, "err", lerr)
	}
	for _, k := range []string{b.partKey(key), b.partIndexKey(key)} {
		if err := b.delete(ctx, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *Bucket) delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("objstore: delete %s: %w", key, err)
	}
	return nil
}

// Commit checks key's upload against size and the SHA-256 wantSHA (hex)
// and completes it as the recording at rel. A mismatch discards the
// upload and returns storage.ErrChecksum or storage.ErrSize with the
// checksum of what was received. The caller holds key's Lock.
func (b *Bucket) Commit(ctx context.Context, key, rel string, size int64, wantSHA string) (string, error) {
	if !storage.ValidKey(key) {
		return "", fmt.Errorf("storage: invalid recording key %q", key)
	}
	target, err := b.objectKey(rel)
	if err != nil {
		return "", err
	}
	u, err := b.load(ctx, key)
	if err != nil {
		return "", err
	}
	if u == nil {
		return "", fmt.Errorf("storage: no upload of %s", key)
	}
	h := u.sha
	h.Write(u.tail)
	sum := hex.EncodeToString(h.Sum(nil))
	if n := u.held(); n != size {
		b.Discard(ctx, key)
		return sum, fmt.Errorf("%w: received %d bytes, announced %d", storage.ErrSize, n, size)
	}
	if !strings.EqualFold(sum, wantSHA) {
		b.Discard(ctx, key)
		return sum, fmt.Errorf("%w: received %s, announced %s", storage.ErrChecksum, sum, wantSHA)
	}
	if u.target != target {
		b.Discard(ctx, key)
		return sum, fmt.Errorf("%w: the upload was for %s, not %s", storage.ErrSize, u.target, target)
	}
	if u.id == "" {
		// Smaller than a part: one PUT.
		if err := b.put(ctx, target, u.tail); err != nil {
			return sum, err
		}
	} else {
		if err := b.complete(ctx, u); err != nil {
			return sum, err
		}
	}
	if err := b.delete(ctx, b.partKey(key)); err != nil {
		return sum, err
	}
	return sum, nil
}

// complete lists u's parts, uploads its tail as the last one and
// completes the multipart upload with exactly the parts u counts (a part
// sent twice after a crash is replaced; one beyond them is left out).
// Listing first also finds an upload completed before without sending a
// body to it, which some servers answer by resetting the connection.
func (b *Bucket) complete(ctx context.Context, u *upload) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	last := u.parts
	etags := make([]string, last, last+1)
	in := &s3.ListPartsInput{Bucket: &b.bucket, Key: &u.target, UploadId: &u.id, MaxParts: aws.Int32(maxListPage)}
	for page := 0; ; page++ {
		if page > maxParts/maxListPage+1 {
			return fmt.Errorf("objstore: list the parts of %s: more pages than %d parts need", u.target, maxParts)
		}
		out, err := b.client.ListParts(ctx, in)
		if isNotFound(err) && page == 0 && b.completed(ctx, u) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("objstore: list the parts of %s: %w", u.target, err)
		}
		if len(out.Parts) > maxListPage {
			return fmt.Errorf("objstore: list the parts of %s: %d in one answer", u.target, len(out.Parts))
		}
		for _, p := range out.Parts {
			n := int64(aws.ToInt32(p.PartNumber))
			if n < 1 || n > last {
				continue
			}
			if aws.ToInt64(p.Size) != u.partSize {
				return fmt.Errorf("objstore: part %d of %s holds %d bytes, not %d", n, u.target, aws.ToInt64(p.Size), u.partSize)
			}
			etags[n-1] = aws.ToString(p.ETag)
		}
		if !aws.ToBool(out.IsTruncated) || out.NextPartNumberMarker == nil {
			break
		}
		in.PartNumberMarker = out.NextPartNumberMarker
	}
	if len(u.tail) > 0 {
		etag, err := b.uploadPart(ctx, u, int32(last+1), u.tail)
		if err != nil {
			if b.completed(ctx, u) {
				return nil
			}
			return err
		}
		etags = append(etags, etag)
	}
	parts := make([]types.CompletedPart, len(etags))
	for i, e := range etags {
		if e == "" {
			return fmt.Errorf("objstore: part %d of %s is missing", i+1, u.target)
		}
		parts[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: aws.String(e)}
	}
	_, err := b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &b.bucket, Key: &u.target,
		UploadId: &u.id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return fmt.Errorf("objstore: complete the upload of %s: %w", u.target, err)
	}
	return nil
}

// completed reports whether u's upload was completed before (and the
// state's removal, or the answer, lost): the upload is gone and the
// object is the size the state says.
func (b *Bucket) completed(ctx context.Context, u *upload) bool {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	head, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &u.target})
	return err == nil && aws.ToInt64(head.ContentLength) == u.held()
}

// Open opens the recording at rel: reads are ranged GETs, so a seek
// fetches only from where it lands. ctx bounds the reads too.
func (b *Bucket) Open(ctx context.Context, rel string) (storage.File, error) {
	k, err := b.objectKey(rel)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, b.timeout)
	out, err := b.client.HeadObject(hctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &k})
	cancel()
	if isNotFound(err) {
		return nil, fmt.Errorf("objstore: recording %s: %w", rel, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: recording %s: %w", rel, err)
	}
	size := aws.ToInt64(out.ContentLength)
	if size < 0 {
		return nil, fmt.Errorf("objstore: recording %s: size %d", rel, size)
	}
	return &object{ctx: ctx, b: b, key: k, size: size, window: minWindow}, nil
}

// Remove deletes the recording at rel and its index; one already gone is
// not an error.
func (b *Bucket) Remove(ctx context.Context, rel string) error {
	k, err := b.objectKey(rel)
	if err != nil {
		return err
	}
	return errors.Join(b.delete(ctx, k), b.delete(ctx, storage.IndexPath(k)))
}

// PutIndex keeps the key-frame index of key's upload, replacing one sent
// before. The caller holds key's Lock.
func (b *Bucket) PutIndex(ctx context.Context, key string, r io.Reader) error {
	if !storage.ValidKey(key) {
		return fmt.Errorf("storage: invalid recording key %q", key)
	}
	p, err := io.ReadAll(io.LimitReader(r, storage.MaxIndex+1))
	if err != nil {
		return fmt.Errorf("storage: read index: %w", err)
	}
	if len(p) > storage.MaxIndex {
		return fmt.Errorf("%w: index over %d bytes", storage.ErrSize, storage.MaxIndex)
	}
	return b.put(ctx, b.partIndexKey(key), p)
}

func (b *Bucket) put(ctx context.Context, key string, p []byte) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	_, err := b.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &b.bucket, Key: &key,
		Body: bytes.NewReader(p), ContentLength: aws.Int64(int64(len(p)))})
	if err != nil {
		return fmt.Errorf("objstore: store %s: %w", key, err)
	}
	return nil
}

// getSmall reads the object key of at most limit bytes; nil, nil for
// none.
func (b *Bucket) getSmall(ctx context.Context, key string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: &key})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: read %s: %w", key, err)
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > limit {
		return nil, fmt.Errorf("%w: %s holds %d bytes, over %d", storage.ErrSize, key, n, limit)
	}
	p, err := io.ReadAll(io.LimitReader(out.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("objstore: read %s: %w", key, err)
	}
	if int64(len(p)) > limit {
		return nil, fmt.Errorf("%w: %s holds over %d bytes", storage.ErrSize, key, limit)
	}
	if p == nil {
		p = []byte{}
	}
	return p, nil
}

// CommitIndex stores the index that came with key's upload beside the
// recording at rel (size bytes long), cut to the key frames inside it. It
// reports whether there was one; a damaged index keeps the key frames
// before the damage and returns the damage as an error too. The caller
// holds key's Lock.
func (b *Bucket) CommitIndex(ctx context.Context, key, rel string, size int64) (bool, error) {
	if !storage.ValidKey(key) {
		return false, fmt.Errorf("storage: invalid recording key %q", key)
	}
	k, err := b.objectKey(rel)
	if err != nil {
		return false, err
	}
	p, err := b.getSmall(ctx, b.partIndexKey(key), storage.MaxIndex)
	if err != nil || p == nil {
		return false, err
	}
	ix, rerr := guacrec.ReadIndex(bytes.NewReader(p))
	var buf bytes.Buffer
	guacrec.WriteIndex(&buf, ix.Within(size))
	if err := b.put(ctx, storage.IndexPath(k), buf.Bytes()); err != nil {
		return false, err
	}
	if err := b.delete(ctx, b.partIndexKey(key)); err != nil {
		b.log.Warn("delete a stored recording's incoming index", "session", key, "err", err)
	}
	if rerr != nil {
		return true, fmt.Errorf("storage: index of %s: %w", key, rerr)
	}
	return true, nil
}

// Index returns the key-frame index of the desktop recording at rel; a
// recording without one has none.
func (b *Bucket) Index(ctx context.Context, rel string) (guacrec.Index, error) {
	k, err := b.objectKey(rel)
	if err != nil {
		return nil, err
	}
	p, err := b.getSmall(ctx, storage.IndexPath(k), storage.MaxIndex)
	if err != nil || p == nil {
		return nil, err
	}
	ix, err := guacrec.ReadIndex(bytes.NewReader(p))
	if err != nil {
		return ix, fmt.Errorf("storage: index of %s: %w", rel, err)
	}
	return ix, nil
}

// Writable checks that recordings can be stored: it puts and deletes a
// small object where uploads are received.
func (b *Bucket) Writable(ctx context.Context) error {
	k := b.prefix + storage.Incoming + "/.writable-" + rand.Text()
	if err := b.put(ctx, k, []byte("ok")); err != nil {
		return fmt.Errorf("storage: write to %s: %w", b, err)
	}
	if err := b.delete(ctx, k); err != nil {
		return fmt.Errorf("storage: write to %s: %w", b, err)
	}
	return nil
}

// isNotFound reports whether err says the object, or upload, is not
// there.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsu *types.NoSuchUpload
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsu) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchUpload":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}
