"""The test node: a Node object and a kubelet for it that runs pod containers as local processes."""
