"""What a worker learns from the machine and the cluster it runs on: the GPU, the precision it
computes in, memory peaks, and the few Kubernetes API calls a pod makes with its own token
(releasing the gated stages, watching the evaluate Job)."""
