"""Matching: what a batch's search means. Review thresholds calibrated to an FPIR and the one
policy that picks a batch's threshold, the engine choice and its cost model, the recall audit,
candidate rows, and a batch searched end to end. The gallery beneath it only stores templates
and runs the search engines."""
