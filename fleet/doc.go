// Package fleet carries a host's nlmcast frames beyond the host, through
// NATS JetStream (PROTOCOL.md, "Beyond one host"): a Publisher reads the
// bridge's raw groups on one host like any receiver and publishes every
// frame, byte for byte, on the subject nlmcast.HOST.STREAM of a JetStream
// stream; a Source reads one host's subjects back, anywhere, and gives a
// receiver.Receiver (Config.Source) the same datagrams it would have read
// on that host's loopback groups, so that it checks them as it checks
// those: sequence numbers, epochs, trailers and seals.
//
// Only this package (and cmd/nlmcast) imports the NATS client: the
// multicast and frame layers know nothing of it.
package fleet
