"""The controller: scenario -> plan -> environment -> load generators -> results -> report."""
