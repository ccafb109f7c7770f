package main

import "unicode/utf8"

// Text that nlmcast prints can come from any local user (a forged frame's
// summary or interface name) or from the kernel (generic netlink names).
// A terminal acts on control characters, so none may reach it raw:
// everything printed for people goes through safe, and JSON through
// appendSafeJSON.

// safe returns s with C0 control characters, DEL, C1 control characters
// (U+0080 to U+009F) and bytes of invalid UTF-8 escaped as Go quotes them
// (\t, \n, \r, \x1b, \u009b, \xff). Text with nothing to escape is returned
// as it is, without allocating.
func safe(s string) string {
	i := unsafeAt(s)
	if i < 0 {
		return s
	}
	return string(appendSafe(append(make([]byte, 0, len(s)+8), s[:i]...), s[i:]))
}

// unsafeAt returns the index of the first byte of s that safe escapes, or -1.
func unsafeAt(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if n == 1 || r <= 0x9f { // invalid (n == 1 only for RuneError), or C1
			return i
		}
		i += n
	}
	return -1
}

// appendSafe appends s to dst, escaped as safe says.
func appendSafe(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\t':
				dst = append(dst, `\t`...)
			case c == '\n':
				dst = append(dst, `\n`...)
			case c == '\r':
				dst = append(dst, `\r`...)
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case n == 1:
			dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
		case r <= 0x9f:
			dst = append(dst, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// appendSafeJSON appends the JSON text src to dst with every character a
// terminal acts on escaped, leaving its value unchanged. Inside strings,
// control characters (raw ones are not valid JSON, but src may come from
// anyone), DEL and C1 become \u00XX, and invalid UTF-8 becomes \ufffd,
// which is what a JSON reader makes of it anyway. Outside strings, compact
// drops all whitespace and ends the text with one newline (one object per
// line, whatever a sender put between tokens); otherwise spaces and
// newlines are kept, as an indenting encoder wrote them. Other control
// bytes and non-ASCII outside strings are not JSON and are dropped.
func appendSafeJSON(dst, src []byte, compact bool) []byte {
	const hex = "0123456789abcdef"
	in, esc := false, false // in a string; after a backslash in one
	for i := 0; i < len(src); {
		c := src[i]
		if !in {
			switch {
			case c == '"':
				in = true
				dst = append(dst, c)
			case c == ' ' || c == '\n':
				if !compact {
					dst = append(dst, c)
				}
			case c > ' ' && c < 0x7f:
				dst = append(dst, c)
			}
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch {
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
				esc = false
			case esc:
				dst, esc = append(dst, c), false
			case c == '\\':
				dst, esc = append(dst, c), true
			case c == '"':
				dst, in = append(dst, c), false
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		// An escape sequence's next byte is ASCII in valid JSON; after a
		// backslash, anything else is left escaped by the backslash.
		if esc {
			dst, esc = append(dst, 'u', 'f', 'f', 'f', 'd'), false
			i++
			continue
		}
		r, n := utf8.DecodeRune(src[i:])
		switch {
		case n == 1:
			dst = append(dst, `\ufffd`...)
		case r <= 0x9f:
			dst = append(dst, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			dst = append(dst, src[i:i+n]...)
		}
		i += n
	}
	if compact {
		dst = append(dst, '\n')
	}
	return dst
}
