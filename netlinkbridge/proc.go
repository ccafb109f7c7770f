package netlinkbridge

import (
	"errors"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/kernel"
)

// procDriver: process events (cn_proc), subscribed with
// PROC_CN_MCAST_LISTEN and unsubscribed on close (kernel.OpenProc).
type procDriver struct{}

func (procDriver) open(b *Bridge, cfg *Config) (Source, error) {
	initial, err := kernel.InitialNetNS(cfg.NetNS)
	if err != nil {
		b.log.Warn("process events arrive only in the initial network namespace, and this one may not be it", "err", err)
	} else if !initial {
		return nil, errors.New("process events (stream proc) come only in the host's initial network namespace, where the kernel's " +
			"connector lives; this bridge reads from another one: bridge proc from a bridge running in the initial namespace, without --netns")
	}
	cookie := uint32(b.epoch) >> 1 // the kernel answers cookie+1
	return kernel.OpenProc(kernelConfig(b, cfg, 0), cookie)
}

func (procDriver) watches(*Bridge, uint32) bool                      { return false }
func (procDriver) observe(*Bridge, *kernel.Message)                  {}
func (procDriver) decode(_ *Bridge, m *kernel.Message) decode.Result { return decode.Proc(m.Data) }
