"""A Kubernetes cluster of real parts on this machine, for Foundation's tests and demos.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as real binaries; the
test node (``localcluster.node``) registers a Node and acts as its kubelet, running each pod's
containers as local processes in their own mount and network namespaces.
"""
