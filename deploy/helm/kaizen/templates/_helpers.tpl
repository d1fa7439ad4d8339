{{- define "kaizen.labels" -}}
app.kubernetes.io/part-of: kaizen
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "kaizen.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "kaizen.image" -}}
{{ .root.Values.image.registry }}/kaizen-{{ .image }}:{{ .root.Values.image.tag }}
{{- end }}

{{- define "kaizen.secretName" -}}
{{ .Values.secrets.existingSecret | default (printf "%s-secrets" .Release.Name) }}
{{- end }}

{{- define "kaizen.topic" -}}
{{ .root.Values.kafka.topicPrefix }}{{ .name }}
{{- end }}
