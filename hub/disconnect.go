package hub

// DisconnectCode classifies why a member's connection ended. Fronts map it to
// their own terms (a WebSocket close status, a last error line on TCP).
type DisconnectCode uint8

// Disconnect codes.
const (
	// CodeLeft: the client closed the connection or asked to quit.
	CodeLeft DisconnectCode = iota
	// CodeSlowConsumer: the member's send queue overflowed.
	CodeSlowConsumer
	// CodeShutdown: the server is shutting down.
	CodeShutdown
	// CodeBadInput: the client sent something that cannot be recovered from,
	// such as a request over the size limit.
	CodeBadInput
	// CodeWriteFailed: writing to the client failed or timed out.
	CodeWriteFailed
	// CodeReadFailed: reading from the client failed.
	CodeReadFailed
	// CodeTimeout: the client did not log in, or answer a ping, in time.
	CodeTimeout
	// CodeAbuse: the client kept sending requests that were refused.
	CodeAbuse
	// CodeInternal: a bug while serving the client (a recovered panic).
	CodeInternal
)

// String names the code for logs and metrics.
func (c DisconnectCode) String() string {
	switch c {
	case CodeLeft:
		return "left"
	case CodeSlowConsumer:
		return "slow_consumer"
	case CodeShutdown:
		return "shutdown"
	case CodeBadInput:
		return "bad_input"
	case CodeWriteFailed:
		return "write_failed"
	case CodeReadFailed:
		return "read_failed"
	case CodeTimeout:
		return "timeout"
	case CodeAbuse:
		return "abuse"
	case CodeInternal:
		return "internal"
	}
	return "unknown"
}

// Disconnect is why a connection ended, as an error value: a code for
// machines and a reason for people.
type Disconnect struct {
	Code   DisconnectCode
	Reason string
}

// Error returns the reason.
func (d Disconnect) Error() string { return d.Reason }

// Common disconnects.
var (
	DisconnectLeft         = Disconnect{Code: CodeLeft, Reason: "left"}
	DisconnectSlowConsumer = Disconnect{Code: CodeSlowConsumer, Reason: "slow consumer: too many undelivered messages"}
	DisconnectShutdown     = Disconnect{Code: CodeShutdown, Reason: "server shutting down"}
)
