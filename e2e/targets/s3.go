package targets

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The S3-compatible test server is versitygw with its posix backend, a
// Go program built from the module in e2e/s3server (its own go.mod, so
// its many dependencies stay out of the portal's). `make s3server` builds
// it into bin/; a test that finds none builds it there itself, once.
const (
	s3serverModule = "e2e/s3server"
	s3serverBin    = "bin/versitygw"
	s3serverPkg    = "github.com/versity/versitygw/cmd/versitygw"
	// s3StartTimeout bounds the start and the bucket's creation on a
	// loaded machine.
	s3StartTimeout = 60 * time.Second
	// s3BuildTimeout bounds building the server the first time: about 2.5
	// minutes on a busy 2-core machine.
	s3BuildTimeout = 15 * time.Minute
)

// S3 is a running S3-compatible server on 127.0.0.1 with one bucket, its
// data in a test's directory.
type S3 struct {
	// Endpoint is the server's URL, http://127.0.0.1:PORT.
	Endpoint string
	Region   string
	Bucket   string
	// AccessKey and SecretKey are the root user's credentials.
	AccessKey, SecretKey string
	// Dir is the posix backend's root: the bucket is the directory Bucket
	// in it.
	Dir string

	cmd    *exec.Cmd
	done   <-chan struct{}
	stderr *bytes.Buffer
}

// Env returns the environment the AWS SDK reads credentials and region
// from.
func (s *S3) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=" + s.Region}
}

// Credentials returns the root user's credentials.
func (s *S3) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")
}

// Client returns an S3 client for the server, for tests that look at the
// bucket directly.
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{Region: s.Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials:                s.Credentials(),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired})
}

// Keys lists the bucket's object keys under prefix.
func (s *S3) Keys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return keys, err
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// S3Server returns the path of the versitygw binary, building it into
// the module's bin/ if it is not there. A build that fails is an error:
// tests that need the server fail, never skip.
func S3Server(ctx context.Context) (string, error) {
	s3serverOnce.Do(func() { s3serverPath, s3serverErr = buildS3Server(ctx) })
	return s3serverPath, s3serverErr
}

var (
	s3serverOnce sync.Once
	s3serverPath string
	s3serverErr  error
)

func buildS3Server(ctx context.Context) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if err != nil || root == "." {
		return "", fmt.Errorf("find the module root: %v", err)
	}
	bin := filepath.Join(root, s3serverBin)
	sum, serr := os.Stat(filepath.Join(root, s3serverModule, "go.sum"))
	if serr != nil {
		return "", fmt.Errorf("the S3 server's module: %w", serr)
	}
	if info, err := os.Stat(bin); err == nil && !info.ModTime().Before(sum.ModTime()) {
		return bin, nil
	}
	// Built under a temporary name and renamed: test binaries of several
	// packages may build at once, and none may run a half-written file.
	ctx, cancel := context.WithTimeout(ctx, s3BuildTimeout)
	defer cancel()
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, s3serverPkg)
	cmd.Dir = filepath.Join(root, s3serverModule)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build the S3 test server (cd %s && go build %s): %v\n%s", s3serverModule, s3serverPkg, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return bin, nil
}

// StartS3 starts versitygw on a free loopback port with a new bucket,
// keeping its objects and metadata under dir.
func StartS3(ctx context.Context, dir string) (*S3, error) {
	bin, err := S3Server(ctx)
	if err != nil {
		return nil, err
	}
	if dir, err = absDir(dir); err != nil {
		return nil, err
	}
	s := &S3{Region: "us-east-1", Bucket: "keyway-test", AccessKey: "kwtest" + strings.ToLower(rand.Text()[:10]),
		SecretKey: rand.Text(), Dir: filepath.Join(dir, "root")}
	sidecar := filepath.Join(dir, "meta")
	for _, d := range []string{s.Dir, sidecar} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// A port picked free may be taken before the server binds it; try
	// again then.
	for attempt := 0; ; attempt++ {
		port, perr := freePort()
		if perr != nil {
			return nil, perr
		}
		if err = s.start(ctx, bin, port, sidecar); err == nil || attempt == 4 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, s3StartTimeout)
	defer cancel()
	if _, err := s.Client().CreateBucket(cctx, &s3.CreateBucketInput{Bucket: &s.Bucket}); err != nil {
		s.Stop()
		return nil, fmt.Errorf("create bucket %s: %w: %s", s.Bucket, err, s.stderr)
	}
	return s, nil
}

func (s *S3) start(ctx context.Context, bin string, port int, sidecar string) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Endpoint = "http://" + addr
	s.stderr = &bytes.Buffer{}
	// Credentials in the environment, not on the command line that ps
	// shows.
	s.cmd = exec.Command(bin, "--port", addr, "--quiet", "posix", "--sidecar", sidecar, s.Dir)
	s.cmd.Env = []string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.SecretKey, "VGW_REGION=" + s.Region,
		"PATH=/usr/bin:/bin"}
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	var err error
	if s.done, err = startChild(s.cmd); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	if err := waitListening(ctx, addr, s.done, s3StartTimeout); err != nil {
		s.stop()
		return fmt.Errorf("versitygw on %s: %w: %s", addr, err, strings.TrimSpace(s.stderr.String()))
	}
	return nil
}

func (s *S3) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	signalAndWait(s.cmd, s.done, syscall.SIGTERM, 10*time.Second)
}

// Stop ends the server. Its directory is the caller's.
func (s *S3) Stop() { s.stop() }

// NewS3 starts an S3-compatible server with a bucket for a test, its data
// in the test's directory, and stops it when the test ends. A server that
// cannot be built or started fails the test.
func NewS3(t testing.TB) *S3 {
	t.Helper()
	s, err := StartS3(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("start the S3 test server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// ByteCounter counts the bytes of response bodies read through its
// client: what a store fetched from the S3 server.
type ByteCounter struct {
	n atomic.Int64
}

// Client returns an HTTP client whose response bodies are counted.
func (c *ByteCounter) Client() *http.Client {
	return &http.Client{Transport: countingTransport{c}}
}

// Bytes returns the bytes read so far.
func (c *ByteCounter) Bytes() int64 { return c.n.Load() }

// Reset starts counting from zero.
func (c *ByteCounter) Reset() { c.n.Store(0) }

type countingTransport struct{ c *ByteCounter }

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, c: t.c}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	c *ByteCounter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.n.Add(int64(n))
	return n, err
}
