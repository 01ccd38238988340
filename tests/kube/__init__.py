"""Tests of Wicket's kubeconfig handling (core.kube and ``wicket kubeconfig``)."""
