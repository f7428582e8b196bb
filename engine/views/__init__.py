"""Read models: status, the console snapshot, gate evidence, export, the HTML report and the headless log."""
