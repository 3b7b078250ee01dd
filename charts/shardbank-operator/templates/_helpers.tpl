{{- define "shardbank-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shardbank-operator.labels" -}}
app.kubernetes.io/name: shardbank-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "shardbank-operator.selectorLabels" -}}
app.kubernetes.io/name: shardbank-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shardbank-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shardbank-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "shardbank-operator.natsUrl" -}}
{{- if .Values.nats.managedUrl -}}
{{- .Values.nats.managedUrl -}}
{{- else if .Values.nats.enabled -}}
{{- printf "nats://%s-nats.%s.svc:4222" (include "shardbank-operator.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}
