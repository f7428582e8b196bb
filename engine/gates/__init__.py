"""Gates between sprints: the proposal (narrowing and re-opening), decisions and the policies that make them."""
