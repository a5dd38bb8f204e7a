{{/* Names and labels shared by every template. */}}
{{- define "foundation.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "foundation.operatorName" -}}
{{- printf "%s-operator" (include "foundation.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "foundation.selectorLabels" -}}
app.kubernetes.io/name: foundation-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "foundation.labels" -}}
{{ include "foundation.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "foundation.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The agents' default image: agents.image, else the operator's own (it carries both). */}}
{{- define "foundation.agentImage" -}}
{{- .Values.agents.image | default (include "foundation.image" .) -}}
{{- end -}}

{{/* The operator's RBAC rules, generated from operator/core/rbac.py. */}}
{{- define "foundation.rules" -}}
{{- .Files.Get "files/operator-rules.yaml" | fromYaml | toJson -}}
{{- end -}}
