//go:build !race

package privdrop

const raceBuild = false
