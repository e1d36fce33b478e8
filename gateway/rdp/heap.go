package rdp

/*
#include <malloc.h>
*/
import "C"

// cHeapInUse is the C heap in use (glibc's mallinfo2: allocated chunks and
// mmapped blocks), without what the allocator keeps free for reuse. Tests
// use it to check that Close frees every FreeRDP object, which RSS alone,
// with glibc's per-thread arenas, cannot tell.
func cHeapInUse() int {
	mi := C.mallinfo2()
	return int(mi.uordblks + mi.hblkhd)
}
