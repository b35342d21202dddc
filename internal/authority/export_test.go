package authority

// SeenRequests is how many signed requests of checkpoints s remembers.
func SeenRequests(s *Server) int {
	s.seen.mu.Lock()
	defer s.seen.mu.Unlock()
	return s.seen.total
}
