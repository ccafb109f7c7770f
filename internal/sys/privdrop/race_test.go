//go:build race

package privdrop

const raceBuild = true // -race links cgo: Drop must refuse
