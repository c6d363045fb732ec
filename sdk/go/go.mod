module gregormq.dev/sdk/go

go 1.26.8

require (
	github.com/klauspost/compress v1.20.5
	github.com/pierrec/lz4/v4 v4.1.33
)
