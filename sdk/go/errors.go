package gregormq

import (
	"errors"
	"fmt"
)

// Code is a protocol error code (docs/protocol.md §9.2). Codes are stable: never renumbered.
type Code uint16

// The protocol's error codes.
const (
	CodeInternal             Code = 1
	CodeMalformedFrame       Code = 2
	CodeUnsupportedVersion   Code = 3
	CodeUnknownOpcode        Code = 4
	CodeFrameTooLarge        Code = 5
	CodeMalformedRequest     Code = 6
	CodeHandshakeRequired    Code = 7
	CodeAuthenticationFailed Code = 8
	CodeInvalidRequest       Code = 9
	CodeUnknownTopic         Code = 10
	CodeTopicExists          Code = 11
	CodeInvalidTopic         Code = 12
	CodeUnknownPartition     Code = 13
	CodeCorruptBatch         Code = 14
	CodeBatchTooLarge        Code = 15
	CodeOffsetOutOfRange     Code = 16
	CodeUnknownSubscription  Code = 17
	CodeSubscriptionExists   Code = 18
	CodeLimitExceeded        Code = 19
	CodeUnsupportedCodec     Code = 20
	CodeStorageError         Code = 21
	CodeTimeout              Code = 22
	CodeNotLeader            Code = 23
	CodeSubscriptionInUse    Code = 24
	CodeShuttingDown         Code = 25
	CodeUnknownMember        Code = 26
	CodeStaleGeneration      Code = 27
	CodeFencedInstance       Code = 28
	CodeGroupNotEmpty        Code = 29
	CodeOutOfOrderSequence   Code = 30
	CodeProducerFenced       Code = 31
	CodeInvalidOffset        Code = 32
	CodeDuplicateSequence    Code = 33
	CodePartitionDamaged     Code = 34
	CodeAuthorizationFailed  Code = 35
)

var codeNames = map[Code]string{
	CodeInternal: "INTERNAL", CodeMalformedFrame: "MALFORMED_FRAME",
	CodeUnsupportedVersion: "UNSUPPORTED_VERSION", CodeUnknownOpcode: "UNKNOWN_OPCODE",
	CodeFrameTooLarge: "FRAME_TOO_LARGE", CodeMalformedRequest: "MALFORMED_REQUEST",
	CodeHandshakeRequired: "HANDSHAKE_REQUIRED", CodeAuthenticationFailed: "AUTHENTICATION_FAILED",
	CodeInvalidRequest: "INVALID_REQUEST", CodeUnknownTopic: "UNKNOWN_TOPIC",
	CodeTopicExists: "TOPIC_EXISTS", CodeInvalidTopic: "INVALID_TOPIC",
	CodeUnknownPartition: "UNKNOWN_PARTITION", CodeCorruptBatch: "CORRUPT_BATCH",
	CodeBatchTooLarge: "BATCH_TOO_LARGE", CodeOffsetOutOfRange: "OFFSET_OUT_OF_RANGE",
	CodeUnknownSubscription: "UNKNOWN_SUBSCRIPTION", CodeSubscriptionExists: "SUBSCRIPTION_EXISTS",
	CodeLimitExceeded: "LIMIT_EXCEEDED", CodeUnsupportedCodec: "UNSUPPORTED_CODEC",
	CodeStorageError: "STORAGE_ERROR", CodeTimeout: "TIMEOUT", CodeNotLeader: "NOT_LEADER",
	CodeSubscriptionInUse: "SUBSCRIPTION_IN_USE", CodeShuttingDown: "SHUTTING_DOWN",
	CodeUnknownMember: "UNKNOWN_MEMBER", CodeStaleGeneration: "STALE_GENERATION",
	CodeFencedInstance: "FENCED_INSTANCE", CodeGroupNotEmpty: "GROUP_NOT_EMPTY",
	CodeOutOfOrderSequence: "OUT_OF_ORDER_SEQUENCE", CodeProducerFenced: "PRODUCER_FENCED",
	CodeInvalidOffset: "INVALID_OFFSET", CodeDuplicateSequence: "DUPLICATE_SEQUENCE",
	CodePartitionDamaged: "PARTITION_DAMAGED", CodeAuthorizationFailed: "AUTHORIZATION_FAILED",
}

// String is the code's protocol name, e.g. "UNKNOWN_TOPIC", or CODE_n for a code this SDK does
// not know.
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", uint16(c))
}

// CodeByName returns the code with the given protocol name.
func CodeByName(name string) (Code, bool) {
	for c, n := range codeNames {
		if n == name {
			return c, true
		}
	}
	return 0, false
}

// Fatal reports whether the broker closes the connection after sending this code.
func (c Code) Fatal() bool {
	switch c {
	case CodeMalformedFrame, CodeUnsupportedVersion, CodeUnknownOpcode, CodeFrameTooLarge,
		CodeHandshakeRequired, CodeAuthenticationFailed:
		return true
	}
	return false
}

// Retriable reports whether the same request may succeed if sent again.
func (c Code) Retriable() bool {
	switch c {
	case CodeStorageError, CodeTimeout, CodeNotLeader, CodeLimitExceeded, CodeShuttingDown,
		CodeOutOfOrderSequence:
		return true
	}
	return false
}

// Error is an error the broker answered with (or one this SDK raises with a protocol code, such
// as CORRUPT_BATCH for a batch that fails its checks). Match it with errors.Is against the Err*
// values, or errors.As to read its Code and Message.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "gregormq: " + e.Code.String()
	}
	return "gregormq: " + e.Code.String() + ": " + e.Message
}

// Is matches any *Error with the same code, so errors.Is(err, ErrUnknownTopic) works whatever the
// message.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Sentinels for errors.Is, one per code a client commonly meets.
var (
	ErrInvalidRequest       = &Error{Code: CodeInvalidRequest}
	ErrUnknownTopic         = &Error{Code: CodeUnknownTopic}
	ErrTopicExists          = &Error{Code: CodeTopicExists}
	ErrInvalidTopic         = &Error{Code: CodeInvalidTopic}
	ErrUnknownPartition     = &Error{Code: CodeUnknownPartition}
	ErrCorruptBatch         = &Error{Code: CodeCorruptBatch}
	ErrBatchTooLarge        = &Error{Code: CodeBatchTooLarge}
	ErrOffsetOutOfRange     = &Error{Code: CodeOffsetOutOfRange}
	ErrUnknownSubscription  = &Error{Code: CodeUnknownSubscription}
	ErrSubscriptionInUse    = &Error{Code: CodeSubscriptionInUse}
	ErrLimitExceeded        = &Error{Code: CodeLimitExceeded}
	ErrNotLeader            = &Error{Code: CodeNotLeader}
	ErrAuthenticationFailed = &Error{Code: CodeAuthenticationFailed}
	ErrMalformedFrame       = &Error{Code: CodeMalformedFrame}
	ErrFrameTooLarge        = &Error{Code: CodeFrameTooLarge}
	ErrUnknownMember        = &Error{Code: CodeUnknownMember}
	ErrStaleGeneration      = &Error{Code: CodeStaleGeneration}
	ErrFencedInstance       = &Error{Code: CodeFencedInstance}
	ErrGroupNotEmpty        = &Error{Code: CodeGroupNotEmpty}
	ErrInvalidOffset        = &Error{Code: CodeInvalidOffset}
)

// ErrClosed is returned by calls on a client, producer or subscription after Close.
var ErrClosed = errors.New("gregormq: closed")

// ErrConnectionLost is wrapped by errors of requests whose connection broke before an answer came.
var ErrConnectionLost = errors.New("gregormq: connection lost")

func corrupt(format string, args ...any) error {
	return &Error{Code: CodeCorruptBatch, Message: fmt.Sprintf(format, args...)}
}

func malformed(format string, args ...any) error {
	return &Error{Code: CodeMalformedFrame, Message: fmt.Sprintf(format, args...)}
}
