package fleet

import (
	"hash/fnv"
	"strconv"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/streams"
)

// The headers of a fleet message (PROTOCOL.md, "Beyond one host").
const (
	// HeaderGroup is the group and port the bridge sent the frame to
	// ("239.255.78.1:17802"): it names the stream, and authentication
	// trailers and seals are computed over it.
	HeaderGroup = "Nlmcast-Group"
	// HeaderSource is the address and port the frame came from.
	HeaderSource = "Nlmcast-Source"
	// HeaderHost is the publishing host, as in the subject.
	HeaderHost = "Nlmcast-Host"
	// HeaderLost, on an overrun marker (a message with no body), is how
	// many frames of the stream the publisher dropped there.
	HeaderLost = "Nlmcast-Lost"
	// HeaderMsgID is JetStream's de-duplication id.
	HeaderMsgID = "Nats-Msg-Id"
)

// MsgID returns the de-duplication id of a frame of a host's stream with
// header h: HOST/STREAM/EPOCH/SEQ for the frames that take a sequence
// number of their own (event, overrun, resync-begin, resync-end), and for
// those that repeat or share one (heartbeat, goodbye, fragment, and any
// other kind) HOST/STREAM/EPOCH/SEQ/kKIND/HASH, HASH the FNV-1a-64 of the
// whole frame in hex: a heartbeat's time, a fragment's offset, make it
// distinct, and the same frame published again has the same id. A frame
// of an answer (frame.FlagAnswer), which carries the stream's last number
// without taking one, has HOST/STREAM/EPOCH/SEQ/aKIND/HASH. Numbers are
// decimal.
func MsgID(host string, s streams.Stream, h *frame.Header, b []byte) string {
	id := make([]byte, 0, 96)
	id = append(id, host...)
	id = append(id, '/')
	id = append(id, s.Name...)
	id = append(id, '/')
	id = strconv.AppendUint(id, h.Epoch, 10)
	id = append(id, '/')
	id = strconv.AppendUint(id, h.Seq, 10)
	switch {
	case h.Flags&frame.FlagAnswer != 0:
		f := fnv.New64a()
		f.Write(b)
		id = append(id, "/a"...)
		id = strconv.AppendUint(id, uint64(h.Kind), 10)
		id = append(id, '/')
		id = strconv.AppendUint(id, f.Sum64(), 16)
	case h.Kind == frame.KindEvent, h.Kind == frame.KindOverrun, h.Kind == frame.KindResyncBegin, h.Kind == frame.KindResyncEnd:
	default:
		f := fnv.New64a()
		f.Write(b)
		id = append(id, "/k"...)
		id = strconv.AppendUint(id, uint64(h.Kind), 10)
		id = append(id, '/')
		id = strconv.AppendUint(id, f.Sum64(), 16)
	}
	return string(id)
}

// markerID returns the de-duplication id of an overrun marker:
// HOST/STREAM/EPOCH/SEQ/lost/N, the frames lost following the frame of
// epoch and seq (zero: none before them), N the publisher's count of
// markers (two markers may follow the same frame).
func markerID(host string, s streams.Stream, epoch, seq, n uint64) string {
	return host + "/" + s.Name + "/" + strconv.FormatUint(epoch, 10) + "/" + strconv.FormatUint(seq, 10) + "/lost/" + strconv.FormatUint(n, 10)
}
