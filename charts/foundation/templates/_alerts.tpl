{{/*
The alert rules, with thresholds from .Values.alerts. The PrometheusRule carries them; the
tests render them into a plain rules file for promtool and for a real Prometheus.
*/}}
{{- define "foundation.alertGroups" -}}
- name: foundation
  rules:
    - alert: FoundationAgentRestartIntensityExceeded
      expr: increase(foundation_operator_restart_intensity_exhausted_total[10m]) > 0
      labels:
        severity: critical
      annotations:
        summary: An Agent failed by restart intensity
        description: >-
          {{ "{{" }} $value | humanize {{ "}}" }} Agent(s) exceeded maxRestarts in periodSeconds in
          the last 10 minutes and are Failed (condition Supervised=False, reason
          RestartIntensityExceeded). kubectl get agents -A shows which; the condition's message
          names the member and its last exit. Change the spec or set the
          foundation.dev/restartedAt annotation to start it again.
    - alert: FoundationAgentDegraded
      expr: max(foundation_operator_agents{phase="Degraded"}) > 0
      for: {{ .Values.alerts.degradedMinutes }}m
      labels:
        severity: warning
      annotations:
        summary: Agents have been Degraded for {{ .Values.alerts.degradedMinutes }} minutes
        description: >-
          {{ "{{" }} $value {{ "}}" }} Agent(s) have fewer ready members than replicas.
    - alert: FoundationCircuitOpen
      expr: max by (namespace, pod, upstream) (foundation_sidecar_circuit_state{state=~"open|half_open"}) > 0
      for: {{ .Values.alerts.circuitOpenMinutes }}m
      labels:
        severity: warning
      annotations:
        summary: A circuit has been open for {{ .Values.alerts.circuitOpenMinutes }} minutes
        description: >-
          The sidecar of {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.pod {{ "}}" }}
          refuses calls to upstream {{ "{{" }} $labels.upstream {{ "}}" }}: it keeps failing.
    - alert: FoundationModelUnavailable
      expr: >-
        max by (namespace, pod, upstream) (foundation_sidecar_circuit_state{state=~"open|half_open"})
        * on (namespace, pod, upstream) group_left (agent)
        max by (namespace, pod, upstream, agent) (foundation_llm_model_upstream)
        > 0
      for: {{ .Values.alerts.modelUnavailableMinutes }}m
      labels:
        severity: critical
      annotations:
        summary: An LLM agent's model has been unavailable for {{ .Values.alerts.modelUnavailableMinutes }} minutes
        description: >-
          The circuit of upstream {{ "{{" }} $labels.upstream {{ "}}" }}, the model of Agent
          {{ "{{" }} $labels.agent {{ "}}" }} ({{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.pod {{ "}}" }}),
          stays open: every chat task there fails at once. Check the model server (its
          Service's endpoints, or the URL) and the sidecar's log.
    - alert: FoundationCheckpointSlow
      expr: >-
        histogram_quantile(0.99, sum by (namespace, pod, le)
        (rate(foundation_agent_checkpoint_duration_seconds_bucket[5m])))
        > {{ divf .Values.alerts.checkpointP99Ms 1000 }}
      for: 10m
      labels:
        severity: warning
      annotations:
        summary: Persistence p99 above {{ .Values.alerts.checkpointP99Ms }} ms
        description: >-
          Checkpoints of {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.pod {{ "}}" }}
          take {{ "{{" }} $value | humanizeDuration {{ "}}" }} at p99; tasks wait on them.
    - alert: FoundationReconcileErrors
      expr: sum(rate(foundation_operator_reconciliations_total{result!="ok"}[5m])) > {{ .Values.alerts.reconcileErrorsPerSecond }}
      for: 10m
      labels:
        severity: warning
      annotations:
        summary: The operator's reconciliations fail
        description: >-
          {{ "{{" }} $value {{ "}}" }} failed reconciliations a second; the operator's log says why
          (API errors carry the answer's body).
    - alert: FoundationNoActiveOperator
      expr: (sum(foundation_operator_leader) or vector(0)) < 1
      for: {{ .Values.alerts.noLeaderMinutes }}m
      labels:
        severity: critical
      annotations:
        summary: No Foundation operator is active
        description: >-
          No replica holds the Lease: Agents are not supervised (members keep running, but
          nothing restarts, scales or rolls them).
    - alert: FoundationWorkflowFailed
      expr: increase(foundation_workflow_finished_total{phase="Failed"}[10m]) > 0
      labels:
        severity: warning
      annotations:
        summary: A Workflow failed
        description: >-
          {{ "{{" }} $value | humanize {{ "}}" }} Workflow(s) failed in the last 10 minutes.
          kubectl get workflows -A shows which; the Succeeded condition says why, and each
          failed step's reason and error what happened to it.
    - alert: FoundationWorkflowStalled
      expr: max(foundation_workflow_stalled_seconds) > {{ mul .Values.alerts.workflowStalledMinutes 60 }}
      labels:
        severity: warning
      annotations:
        summary: A Workflow has made no progress for {{ .Values.alerts.workflowStalledMinutes }} minutes
        description: >-
          A Running Workflow has gone {{ "{{" }} $value | humanizeDuration {{ "}}" }} without a
          step starting or finishing: a step waits on a member that is not ready, or runs long.
          kubectl get workflows -A, then the Running steps' member and startedAt.
    - alert: FoundationApprovalWaiting
      expr: max(foundation_workflow_approval_wait_seconds) > {{ mul .Values.alerts.approvalWaitingMinutes 60 }}
      labels:
        severity: info
      annotations:
        summary: An approval has waited {{ .Values.alerts.approvalWaitingMinutes }} minutes for a decision
        description: >-
          {{ "{{" }} $value | humanizeDuration {{ "}}" }} since a Workflow's approval step asked
          for a decision. kubectl get workflows -A -o wide shows which wait (their steps'
          reason WaitingForApproval and prompt); foundation approve or reject decides.
{{- end -}}
