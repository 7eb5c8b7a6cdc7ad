package announced

// pipeBuf is the most bytes one write puts in a pipe atomically
// (PIPE_BUF): Linux's.
const pipeBuf = 4096
