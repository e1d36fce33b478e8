package audit

import (
	"testing"

	"github.com/keyway-dev/keyway/portal/store/storetest"
)

// TestMain stops the PostgreSQL server storetest starts when the tests run
// on PostgreSQL (KEYWAY_TEST_DATABASE=postgres).
func TestMain(m *testing.M) { storetest.Main(m) }
