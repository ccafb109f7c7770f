package receiver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// answerState follows one stream's answer to our request: a resync sent
// to this receiver alone (PROTOCOL.md, Answers).
type answerState struct {
	active bool   // a resync-begin came, its resync-end not yet
	epoch  uint64 // of the resync-begin
	seq    uint64 // the stream's last number at the dump, carried by every frame of the answer
	got    uint64 // dump messages delivered
	lost   bool   // something of it is known lost
	reasm  frame.Reassembler
}

// answer checks one datagram that came to the request socket and passes
// on what it yields. r.mu is held.
func (r *Receiver) answer(d *mcast.Datagram, now time.Time) {
	// d.Group is our request socket's address: where the answer was sent,
	// which its trailer covers.
	var f parsed
	switch r.parse(d, r.encoding, &f, -1) {
	case notAFrame, badFragment, sealedFrame:
		r.badAnswers.Add(1)
		return
	case refused:
		return
	}
	h, payload, js, piece, frag := f.h, f.payload, f.js, f.piece, f.fragment()
	if !r.owner.ok() {
		r.unattested.Add(1)
		return
	}
	s := r.answerStream(&h)
	if s == nil || h.Flags&frame.FlagAnswer == 0 {
		r.badAnswers.Add(1)
		return
	}
	a := r.answers[s.ID]
	if a == nil {
		a = &answerState{reasm: frame.Reassembler{MaxMessage: r.maxMsg, Timeout: r.fragTO}}
		r.answers[s.ID] = a
	}
	if d.Drops > 0 {
		// The request socket lost datagrams: of any answer in progress.
		for _, o := range r.answers {
			if o != nil && o.active {
				o.lost = true
			}
		}
	}
	t := r.trackers[s.ID]
	clock := r.clock(&h, now)
	switch {
	case h.Time > clock+int64(MaxAhead):
		r.note(s, Notice{Kind: Rejected, Reason: Future, From: h.Seq, Epoch: h.Epoch})
		return
	case h.Time < clock-int64(MaxAge):
		r.note(s, Notice{Kind: Rejected, Reason: Stale, From: h.Seq, Epoch: h.Epoch})
		return
	case t != nil && t.known && t.sure && h.Epoch != t.epoch:
		// An answer is of the bridge the stream comes from.
		r.note(s, Notice{Kind: Rejected, Reason: OldEpoch, From: h.Seq, Epoch: h.Epoch})
		return
	}
	ev := Event{Stream: *s, Encoding: r.encoding, Header: h, Payload: payload, JSON: js, Source: d.Source}
	switch h.Kind {
	case frame.KindResyncBegin:
		if a.active {
			r.note(s, Notice{Kind: AnswerLost, Epoch: a.epoch, From: a.seq})
		}
		a.active, a.epoch, a.seq, a.got, a.lost = true, h.Epoch, h.Seq, 0, false
		a.reasm.Reset()
	case frame.KindEvent, frame.KindFragment:
		if !a.active || h.Epoch != a.epoch || h.Seq != a.seq || h.Flags&frame.FlagDump == 0 {
			r.badAnswers.Add(1)
			return
		}
		if h.Kind == frame.KindFragment && !r.reassembleAnswer(a, &ev, *frag, piece, now) {
			return
		}
		a.got++
	case frame.KindResyncEnd:
		if !a.active || h.Epoch != a.epoch || h.Seq != a.seq {
			r.badAnswers.Add(1)
			return
		}
		a.active = false
		a.reasm.Reset()
		var count uint64
		switch {
		case js != nil && js.Count != nil:
			count = *js.Count
		case js == nil && len(payload) == frame.AnswerEndLen:
			count = binary.BigEndian.Uint64(payload)
		default:
			a.lost = true
		}
		if a.lost || count != a.got {
			n := Notice{Kind: AnswerLost, Epoch: a.epoch, From: a.seq}
			if count > a.got {
				n.Count = count - a.got
			}
			r.note(s, n)
			return
		}
	default:
		r.badAnswers.Add(1)
		return
	}
	r.answerFrames.Add(1)
	r.put(&ev)
}

// answerStream returns the joined stream an answer frame is about. r.mu
// is held.
func (r *Receiver) answerStream(h *frame.Header) *streams.Stream {
	for _, id := range r.joined {
		if s := r.live[id]; s.Family == h.Family && s.Group == h.Group && s.Resync {
			return s
		}
	}
	return nil
}

// reassembleAnswer feeds a fragment of an answer's dump message to the
// answer's reassembler and, when the message is complete, turns ev into
// the whole message's event.
func (r *Receiver) reassembleAnswer(a *answerState, ev *Event, f frame.FragmentHeader, piece []byte, now time.Time) bool {
	r.fragments.Add(1)
	msg, done, abandoned, err := a.reasm.AddPiece(ev.Header, f, piece, now)
	if abandoned || err != nil {
		a.lost = true
	}
	if errors.Is(err, frame.ErrFragmentTooLarge) {
		r.tooLarge.Add(1)
	}
	if err != nil || !done {
		return false
	}
	r.reassembled.Add(1)
	msg = bytes.Clone(msg)
	ev.Header.Kind = frame.KindEvent
	ev.Header.PayloadLen = uint32(len(msg))
	ev.Payload = msg
	if ev.Encoding == streams.JSON {
		f, err := frame.ParseJSON(msg)
		if err != nil {
			a.lost = true
			return false
		}
		ev.JSON = f
		ev.Header, _ = f.Header()
	}
	return true
}
