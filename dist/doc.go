// Package dist holds a systemd unit parser (ParseUnit, for the tests) and
// tests that check the files a host installs
// beside the program (make install): the systemd unit, rated by
// systemd-analyze security; the sysusers.d file; the man page, rendered
// without warnings; and the installed tree. integration/service_test.go
// starts the bridge as the unit would.
package dist
