// Package metrics serves nlmcast's counters in the Prometheus text format
// (`nlmcast bridge --metrics ADDR`, `nlmcast listen --metrics ADDR`).
//
// The libraries know nothing of Prometheus: netlinkbridge and receiver
// count with atomics and hand out snapshots (netlinkbridge.Set.Stats,
// receiver.Receiver.Stats). The collectors here read those snapshots when
// Prometheus scrapes, and only then: the event path never calls into this
// package, so scraping costs it nothing but the atomic loads of a
// snapshot.
package metrics
