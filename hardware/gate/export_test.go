package gate

// SetWoke has fn called after each apply a timer makes; set it before the
// first decision.
func SetWoke(g *Gate, fn func()) { g.woke = fn }
