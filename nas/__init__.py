"""Architecture search: the proxy task that scores children, strategies, rewards and the search loop."""
