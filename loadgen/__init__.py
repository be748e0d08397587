"""Load generation: wrk2, wrk and oha behind one LoadSpec and one result shape, the generator
agent, its controller-side client, and the merge of several generators' results."""
